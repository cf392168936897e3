"""KerasViews: a flow model's ``summary``, ``plot`` and functional view (what Keras draws).

A mixin of :class:`tfflows.FlowModel`; the view itself is built by
:func:`tfflows.models.graph.functional_view`.
"""

from __future__ import annotations

import os
from typing import Any

import keras

from tfflows.io import atomic_path
from tfflows.typing import KerasModelMixin

__all__ = ["KerasViews", "GRAPHVIZ_HINT"]

GRAPHVIZ_HINT = (
    "plot needs the pydot package and Graphviz's dot program: pip install pydot, and "
    "apt-get install graphviz (Debian/Ubuntu), brew install graphviz (macOS) or "
    "conda install graphviz."
)
"""How to install what ``plot`` needs, said when it is missing."""


class KerasViews(KerasModelMixin):
    """``as_functional``, ``summary`` and ``plot`` for a flow model (a ``keras.Model``)."""

    def as_functional(self) -> keras.Model:
        """The flow as a functional ``keras.Model`` sharing this model's layers and weights.

        Keras draws and summarises a subclassed model without knowing how its
        layers connect: ``keras.utils.plot_model(model)`` gives one box.
        ``keras.utils.plot_model(model.as_functional(), path)`` draws every
        step; ``as_functional()(x)`` is ``log_prob(x)`` (see
        :mod:`tfflows.models.graph`). Built once and kept (out of saves).
        """
        from tfflows.models.graph import Untracked, functional_view

        holder = getattr(self, "_functional_view", None)
        if holder is None:
            holder = Untracked(functional_view(self))
            self._functional_view = holder
        return holder.value

    def summary(self, *args: Any, **kwargs: Any) -> None:
        """Keras ``summary``: each flow layer with its output shape (and log-det's) and parameters.

        The total also counts the model's own ``nonfinite_steps`` counter.
        """
        self.as_functional()  # gives every layer the shapes Keras prints
        return super().summary(*args, **kwargs)

    def plot(
        self,
        to_file: str | os.PathLike,
        show_shapes: bool = True,
        show_layer_names: bool = True,
        **kwargs: Any,
    ) -> str:
        """Draws the flow with ``keras.utils.plot_model`` into ``to_file`` (written atomically).

        Needs ``pydot`` and Graphviz's ``dot``. Returns ``to_file`` as a string.
        """
        to_file = os.fspath(to_file)
        try:
            # Keras's plot_model only prints a line and returns when these are missing.
            import pydot

            pydot.Dot.create(pydot.Dot())
        except Exception as err:  # ImportError, or pydot's own error when `dot` is not installed
            raise ImportError(f"{type(self).__name__}.{GRAPHVIZ_HINT} ({err})") from None
        with atomic_path(to_file) as tmp:
            keras.utils.plot_model(
                self.as_functional(),
                to_file=tmp,
                show_shapes=show_shapes,
                show_layer_names=show_layer_names,
                **kwargs,
            )
        return to_file
