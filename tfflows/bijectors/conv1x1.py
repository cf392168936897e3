"""Invertible 1x1 convolution (Glow) and its LU parameterisation."""

from __future__ import annotations

import tensorflow as tf

from tfflows.bijectors.base import FlowBijector, check_channels

__all__ = ["InvertibleConv1x1", "lu_weight"]


def lu_weight(
    permutation: tf.Tensor, lower: tf.Tensor, upper: tf.Tensor, log_diag: tf.Tensor, sign: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Builds W = P L (U + diag(sign · exp(log_diag))) and its inverse.

    ``lower`` and ``upper`` may hold anything on and across the diagonal: only
    their strictly lower / strictly upper parts are used, L gets a unit
    diagonal. Returns ``(W, W⁻¹, log|det W|)``; the inverse uses two
    triangular solves, so it costs O(c³) once per call, not per pixel.
    """
    c = tf.shape(lower)[0]
    dtype = lower.dtype
    eye = tf.eye(c, dtype=dtype)
    l_mat = tf.linalg.band_part(lower, -1, 0) - tf.linalg.band_part(lower, 0, 0) + eye
    u_mat = tf.linalg.band_part(upper, 0, -1) - tf.linalg.band_part(upper, 0, 0)
    u_mat += tf.linalg.diag(tf.cast(sign, dtype) * tf.exp(log_diag))
    p_mat = tf.gather(eye, permutation)  # row i of P is e_{perm[i]}
    weight = tf.matmul(p_mat, tf.matmul(l_mat, u_mat))
    # W⁻¹ = U⁻¹ L⁻¹ Pᵀ
    l_inv = tf.linalg.triangular_solve(l_mat, eye, lower=True)
    lu_inv = tf.linalg.triangular_solve(u_mat, l_inv, lower=False)
    inverse = tf.matmul(lu_inv, p_mat, transpose_b=True)
    return weight, inverse, tf.reduce_sum(log_diag)


def qr_log_abs_det(weight: tf.Tensor) -> tf.Tensor:
    """log|det W| = Σ log|R_ii| for W = QR (|det Q| = 1).

    ``tf.linalg.slogdet`` has no XLA kernel, QR has one and a gradient, so
    this form runs eagerly, in ``tf.function`` and with ``jit_compile=True``.
    """
    r = tf.linalg.qr(weight)[1]
    return tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(r))))


class InvertibleConv1x1(FlowBijector):
    """y = x W at every pixel: a learned mixing of channels.

    - forward: y[..., i, j, :] = x[..., i, j, :] W
    - inverse: x[..., i, j, :] = y[..., i, j, :] W⁻¹
    - log-det: H·W·log|det W| for images, log|det W| for vectors
      (``event_ndims=1``, an invertible dense layer).

    Pass ``inverse`` and ``log_abs_det`` when they are known more cheaply
    than by a general inverse and determinant (the LU parameterisation,
    :func:`lu_weight`); otherwise they are computed from W.

    Args:
      weight: [C, C] invertible matrix.
      inverse: optional [C, C] inverse of ``weight``.
      log_abs_det: optional scalar log|det W|.
      event_ndims: 3 for [H, W, C] images, 1 for vectors.

    References:
      Kingma, Dhariwal. Glow: Generative Flow with Invertible 1x1
        Convolutions. NeurIPS 2018, section 3.2.
    """

    def __init__(
        self,
        weight: tf.Tensor,
        inverse: tf.Tensor | None = None,
        log_abs_det: tf.Tensor | None = None,
        event_ndims: int = 3,
        validate_args: bool = False,
        name: str = "invertible_conv1x1",
    ) -> None:
        parameters = dict(locals())
        weight = tf.convert_to_tensor(weight)
        shape = weight.shape
        if shape.rank != 2 or (shape[0] is not None and shape[0] != shape[1]):
            raise ValueError(f"{name}: weight must be a square [C, C] matrix, got shape {shape}.")
        self._weight = weight
        self._channels = shape[0]
        self._inverse_weight = inverse
        if log_abs_det is None:
            if tf.executing_eagerly() and not bool(tf.math.is_finite(tf.linalg.slogdet(weight)[1])):
                raise ValueError(f"{name}: weight must be invertible, got a singular matrix (det = 0).")
            log_abs_det = qr_log_abs_det(weight)
        self._log_abs_det = log_abs_det
        super().__init__(event_ndims, parameters=parameters, name=name, validate_args=validate_args)

    def _validate(self, x, inverse):
        super()._validate(x, inverse)
        check_channels(x, self._channels, self.name)

    def _pixels(self, x):
        if self.event_ndims == 1:
            return tf.ones([], x.dtype)
        return tf.cast(tf.shape(x)[-3] * tf.shape(x)[-2], x.dtype)

    def _apply(self, x, matrix):
        # tensordot, not einsum: einsum is several times slower for these small
        # c×c matrices on CPU (bench/glow_profile.py).
        return tf.tensordot(x, tf.cast(matrix, x.dtype), [[x.shape.rank - 1], [0]])

    def _forward_and_log_det(self, x):
        log_det = self._pixels(x) * tf.cast(self._log_abs_det, x.dtype)
        batch = tf.zeros(tf.shape(x)[: tf.rank(x) - self.event_ndims], x.dtype)
        return self._apply(x, self._weight), log_det + batch

    def _inverse_and_log_det(self, y):
        inv = self._inverse_weight
        if inv is None:
            inv = tf.linalg.inv(self._weight)
        log_det = -self._pixels(y) * tf.cast(self._log_abs_det, y.dtype)
        batch = tf.zeros(tf.shape(y)[: tf.rank(y) - self.event_ndims], y.dtype)
        return self._apply(y, inv), log_det + batch
