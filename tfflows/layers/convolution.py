"""A stride-1 'same' Conv2D for conditioner networks, computed as matrix products on CPUs.

Coupling networks are thin at one end: Glow's first 3×3 conv reads 2 to 8
channels and its last writes 4 to 16, from 128 or 512. TensorFlow's default
CPU (Eigen) convolution kernels, and XLA's on CPU, are slow for such shapes,
above all in the backward pass (``Conv2DBackpropFilter`` of the last conv
alone took about 30 % of a Glow step; see ``BENCHMARKS.md``). The same
convolution as matrix products:

- 1×1: one matmul over the channels.
- k×k from a few channels (k²·C_in ≤ C_out), under XLA only: gather the k²
  shifted copies of the padded input into k²·C_in channels (im2col, small
  here), one matmul. Without XLA the stock kernel was faster.
- k×k to a few channels (k²·C_out ≤ C_in): one matmul to k²·C_out channels,
  then add the k² shifted slices of its padded result.
- anything else: the stock convolution.

Each gives the stock convolution's result up to float round-off, with the
same ``kernel`` and ``bias`` weights, so saved models load either way.

On a CPU these forms made a whole Glow training step (K=4, L=2, 128
channels, batch 64) 1.9× faster with TensorFlow's default kernels and 1.1×
with oneDNN's; under XLA im2col helps too, and 1.25× overall. On a GPU the
stock cuDNN convolution is kept. So ``implementation="auto"`` means
matrix products on a machine without a visible GPU and the stock
convolution on one with a GPU. Models say when they trace for XLA
(``xla_compiling``), which turns the im2col form on.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf
from keras import ops

__all__ = ["Conv2D", "IMPLEMENTATIONS", "conv_implementation", "resolve_implementation", "xla_compiling"]

IMPLEMENTATIONS = ("auto", "conv", "matmul")

_XLA = contextvars.ContextVar("tfflows_xla_compiling", default=False)
_OVERRIDE = contextvars.ContextVar("tfflows_conv_implementation", default="auto")


@contextlib.contextmanager
def conv_implementation(implementation: str) -> Iterator[None]:
    """Within it, every ``Conv2D(implementation="auto")`` computes as ``implementation``.

    ``export_saved_model`` uses ``"conv"`` so a SavedModel holds stock
    convolutions that any serving machine runs well.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"conv_implementation: expected one of {IMPLEMENTATIONS}, got {implementation!r}.")
    token = _OVERRIDE.set(implementation)
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


@contextlib.contextmanager
def xla_compiling(enabled: bool = True) -> Iterator[None]:
    """Within it, layers are traced for XLA: the matmul forms include im2col.

    ``FlowModel`` wraps its train, test and predict steps in it with the
    ``jit_compile`` it was compiled with.
    """
    token = _XLA.set(bool(enabled))
    try:
        yield
    finally:
        _XLA.reset(token)


@functools.cache
def _gpu_visible() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


def resolve_implementation(implementation: str) -> str:
    """``"conv"`` or ``"matmul"``: what ``implementation`` means on this machine, now."""
    if implementation == "auto":
        implementation = _OVERRIDE.get()
    if implementation != "auto":
        return implementation
    return "conv" if _gpu_visible() else "matmul"


def _window(k: int, i: int) -> slice:
    """Offset i of k in an axis padded by k // 2 on each side: k − 1 shorter than the padding."""
    return slice(i, None if i == k - 1 else i - (k - 1))


def _im2col_conv(x, kernel):
    k, _, c_in, c_out = kernel.shape
    p = k // 2
    padded = ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
    columns = ops.concatenate(
        [padded[:, _window(k, i), _window(k, j), :] for i in range(k) for j in range(k)], axis=-1
    )
    return ops.tensordot(columns, ops.reshape(kernel, (k * k * c_in, c_out)), 1)


def _sum_of_taps(z, k: int):
    """[N, H + k − 1, W + k − 1, k·k, C] → [N, H, W, C]: Σ over taps (i, j) of z shifted by (i, j).

    Its gradient is written out: stacking k·k shifted pads of the upstream
    gradient writes z's size once, where autodiff of the k·k slices writes it
    k·k times (one zero-filled scatter per slice) and adds them up. That made
    up a quarter of a Glow step's op time.
    """

    @tf.custom_gradient
    def taps_sum(z):
        out = None
        for i in range(k):
            for j in range(k):
                term = z[:, _window(k, i), _window(k, j), i * k + j, :]
                out = term if out is None else out + term

        def grad(upstream):
            return tf.stack(
                [
                    tf.pad(upstream, [[0, 0], [i, k - 1 - i], [j, k - 1 - j], [0, 0]])
                    for i in range(k)
                    for j in range(k)
                ],
                axis=3,
            )

        return out, grad

    return taps_sum(z)


def _shift_add_conv(x, kernel):
    k, _, c_in, c_out = kernel.shape
    p = k // 2
    # [C_in, k·k·C_out]: tap (i, j) of output channel o at column (i·k + j)·C_out + o.
    taps = ops.reshape(ops.transpose(kernel, (2, 0, 1, 3)), (c_in, k * k * c_out))
    z = ops.pad(ops.tensordot(x, taps, 1), [[0, 0], [p, p], [p, p], [0, 0]])
    shape = ops.shape(z)
    return _sum_of_taps(ops.reshape(z, (shape[0], shape[1], shape[2], k * k, c_out)), k)


def _stock_conv(convolution_op, x, kernel):
    """The stock convolution, right for an empty batch known when tracing (always so eagerly).

    TensorFlow's Conv2D kernel returns its *input* unchanged when that is
    empty, so a batch of 0 came out with C_in channels instead of C_out and
    failed at the bias add. A batch that is empty only at run time in a
    graph is left to the caller: Grappler removes any reshape that would
    fix the shape there (it proves it an identity), so ``FlowModel`` runs
    its flow under a ``tf.cond`` on the batch size instead.
    """
    if x.shape[0] == 0:
        # Zeros that still depend on x and the kernel, so their gradients are zeros, not None.
        tie = 0.0 * (tf.reduce_sum(kernel) + tf.cast(tf.reduce_sum(x), kernel.dtype))
        shape = tf.concat([tf.shape(x)[:3], [kernel.shape[-1]]], 0)
        return tf.zeros(shape, kernel.dtype) + tie
    return convolution_op(x, kernel)


_FIXED = {"strides": 1, "padding": "same", "dilation_rate": 1, "groups": 1, "data_format": "channels_last"}


def _normalized(value):
    if value is None:
        return "channels_last"
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, int):
        return (value, value)
    return tuple(value)


@keras.saving.register_keras_serializable(package="tfflows")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` with stride 1 and 'same' padding, computed as matmuls on CPUs.

    Args:
      filters: output channels.
      kernel_size: an odd int (or a square pair of one).
      implementation: ``"auto"`` (see the module docstring), ``"conv"`` (always
        the stock convolution) or ``"matmul"`` (always matrix products).
      **kwargs: the other ``keras.layers.Conv2D`` arguments (activation,
        initializers, regularizers, dtype, name), not strides, padding,
        dilation, groups or data format.
    """

    def __init__(
        self, filters: int, kernel_size: int | tuple[int, int], implementation: str = "auto", **kwargs: Any
    ) -> None:
        for arg, default in _FIXED.items():
            value = kwargs.pop(arg, default)
            if _normalized(value) != _normalized(default):
                raise ValueError(f"tfflows Conv2D: only {arg}={default!r} is supported, got {value!r}.")
        size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(size) != 2 or size[0] != size[1] or size[0] < 1 or size[0] % 2 != 1:
            raise ValueError(f"tfflows Conv2D: expected an odd square kernel_size, got {kernel_size!r}.")
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"tfflows Conv2D: expected implementation in {IMPLEMENTATIONS}, got {implementation!r}."
            )
        super().__init__(filters, size, padding="same", **kwargs)
        self.implementation = implementation

    def convolution_op(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        if resolve_implementation(self.implementation) == "matmul":
            k, _, c_in, c_out = kernel.shape
            if k == 1:
                return ops.tensordot(inputs, ops.reshape(kernel, (c_in, c_out)), 1)
            if k * k * c_in <= c_out and _XLA.get():
                return _im2col_conv(inputs, kernel)
            if k * k * c_out <= c_in:
                return _shift_add_conv(inputs, kernel)
        return _stock_conv(super().convolution_op, inputs, kernel)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for arg in _FIXED:
            config.pop(arg, None)
        return {**config, "implementation": self.implementation}
