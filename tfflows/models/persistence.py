"""SavedFlow: a flow model's ``save``, ``save_weights`` and ``export`` — atomic, refusing non-finite weights.

A mixin of :class:`tfflows.FlowModel`. For TF Serving with uint8 images,
sampling and a model card, see :func:`tfflows.export_saved_model`.
"""

from __future__ import annotations

import os
from typing import Any

import keras

from tfflows.guard import check_finite_weights
from tfflows.io import atomic_dir, atomic_path
from tfflows.layers.convolution import conv_implementation
from tfflows.typing import KerasModelMixin

__all__ = ["SavedFlow"]


class SavedFlow(KerasModelMixin):
    """Keras ``save``/``save_weights``/``export`` for a flow model, written atomically."""

    def serving_signature(self) -> list:
        """``[x]`` or ``[x, context]`` as ``keras.InputSpec``: what ``export`` serves by default."""
        specs = [keras.InputSpec(shape=(None, *self.event_shape), dtype="float32", name="x")]
        if self.num_classes is not None:
            specs.append(keras.InputSpec(shape=(None,), dtype="int32", name="context"))
        elif self.context_dim is not None:
            specs.append(keras.InputSpec(shape=(None, self.context_dim), dtype="float32", name="context"))
        return specs

    def export(
        self,
        filepath: str | os.PathLike,
        format: str = "tf_saved_model",
        verbose: bool | None = None,
        input_signature: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Keras ``export`` (an ``ExportArchive``): ``serve(x[, context])`` returns ``log_prob``.

        ``tf.saved_model.load(filepath).serve(x)`` gives ``log_prob(x)`` for
        float32 ``x`` [batch, *event_shape] (pixel levels for image models);
        a conditional model's ``serve`` takes ``context`` too (int32 labels or
        float32 vectors). The folder is written beside ``filepath`` and moved
        into place; an existing SavedModel there is replaced. For TF Serving
        with uint8 images, sampling and a model card, use
        :func:`tfflows.export_saved_model`.

        Raises:
          NonFiniteWeightsError: a weight holds inf or NaN (a ``ValueError``).
          ValueError: a format other than ``"tf_saved_model"``, or ``filepath``
            is a file or a non-empty folder without a SavedModel.
        """
        name = type(self).__name__
        if format != "tf_saved_model":
            raise ValueError(
                f"{name}.export: expected format='tf_saved_model' (the log_prob "
                f"SavedModel), got format={format!r}."
            )
        check_finite_weights(self, "export")
        path = os.fspath(filepath)
        replace = os.path.lexists(path)
        if replace and (
            not os.path.isdir(path)
            or os.path.islink(path)
            or (os.listdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")))
        ):
            raise ValueError(
                f"{name}.export: {path!r} exists and is not a SavedModel folder; refusing to replace it."
            )
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        signature = self.serving_signature() if input_signature is None else input_signature
        # Stock convolutions in the graph, as export_saved_model writes them.
        with atomic_dir(path, overwrite=replace) as tmp, conv_implementation("conv"):
            # Keras would print the temporary folder's name: the message below names the real one.
            super().export(tmp, format=format, verbose=False, input_signature=signature, **kwargs)
        if verbose or verbose is None:
            args = ", ".join(spec.name for spec in self.serving_signature())
            print(f"Saved artifact at '{path}': serve({args}) -> log_prob.")

    def save(self, filepath: str | os.PathLike, overwrite: bool = True, **kwargs: Any) -> None:
        """Keras ``save``, refusing non-finite weights and writing atomically.

        The file is written under a temporary name in the same folder and
        renamed into place, so an interrupted save leaves the old file whole.

        Raises:
          NonFiniteWeightsError: a weight holds inf or NaN (a ``ValueError``).
          ValueError: ``filepath`` exists and ``overwrite`` is false.
        """
        self._write(super().save, "save", filepath, overwrite, **kwargs)

    def save_weights(self, filepath: str | os.PathLike, overwrite: bool = True, **kwargs: Any) -> None:
        """Keras ``save_weights``, refusing non-finite weights and writing atomically."""
        self._write(super().save_weights, "save the weights of", filepath, overwrite, **kwargs)

    def _write(self, writer, action: str, filepath, overwrite: bool, **kwargs) -> None:
        check_finite_weights(self, action)
        filepath = os.fspath(filepath)
        if not overwrite and os.path.exists(filepath):
            raise ValueError(
                f"{type(self).__name__}: cannot {action} the model to {filepath!r}: "
                "it exists and overwrite=False."
            )
        with atomic_path(filepath) as tmp:
            writer(tmp, overwrite=True, **kwargs)
