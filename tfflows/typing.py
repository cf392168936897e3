"""The type aliases of tfflows' public signatures.

TensorFlow, TensorFlow Probability and Keras ship no type stubs, so a type
checker sees ``tf.Tensor`` as ``Any``. These aliases still say, on every public
signature, what a caller may pass: a tensor-like value, a seed, a context, a
shape. They name TensorFlow and NumPy only for the type checker: importing this
module imports neither, so the CLI's ``--help`` stays free of TensorFlow.

Example::

    from tfflows.typing import Context, Seed, TensorLike

    def log_prob(self, x: TensorLike, context: Context = None) -> tf.Tensor: ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf
    from keras import Model as KerasModelMixin
else:
    # The base of FlowModel's mixins (FlowTrainer, KerasViews, SavedFlow): keras.Model for the
    # type checker, which then knows the methods they use, and object at run time, where
    # FlowModel puts keras.Model last in its bases as Keras' own mixins expect.
    KerasModelMixin = object

__all__ = ["DTypeLike", "Context", "KerasModelMixin", "Seed", "Shape", "TensorLike"]

TensorLike: TypeAlias = (
    "tf.Tensor | tf.Variable | np.ndarray | np.generic | float | int | list[Any] | tuple[Any, ...]"
)
"""A value TensorFlow converts to a tensor: a tensor, a NumPy array or scalar, a number, nested
lists or tuples (not a string)."""

Seed: TypeAlias = "int | tf.Tensor | np.ndarray | list[int] | tuple[int, int] | None"
"""A draw's seed: an int, TFP's stateless seed of two integers (a pair, array or tensor), or None."""

Context: TypeAlias = "TensorLike | None"
"""What a conditional model is conditioned on: class labels ``[B]`` (or one label), vectors
``[B, context_dim]`` (or one vector); None for an unconditional model."""

Shape: TypeAlias = "Sequence[int] | tf.TensorShape"
"""The shape of one example or of a batch: a tuple or list of ints, or a ``tf.TensorShape``."""

DTypeLike: TypeAlias = "tf.DType | np.dtype | str"
"""A dtype by object or name: ``tf.float32``, ``np.float32``'s dtype, ``"float32"``."""
