"""Keras layer owning an invertible 1x1 convolution, plain or LU-parameterised."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfflows.bijectors.conv1x1 import InvertibleConv1x1, lu_weight
from tfflows.layers.base import FlowLayer
from tfflows.typing import Shape

__all__ = ["InvertibleConv1x1Layer", "random_rotation", "lu_decompose"]


def random_rotation(channels: int, seed: int | None) -> np.ndarray:
    """A uniformly random orthogonal matrix with determinant +1 (QR of a Gaussian)."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((channels, channels)))
    q = q * np.sign(np.diag(r))[None, :]
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def lu_decompose(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W = P L U with partial pivoting: returns (perm, L, U) with P = eye[perm]."""
    n = w.shape[0]
    u = w.astype(np.float64).copy()
    l_mat = np.eye(n)
    perm = np.arange(n)
    for k in range(n - 1):
        p = k + int(np.argmax(np.abs(u[k:, k])))
        if p != k:
            u[[k, p], :] = u[[p, k], :]
            perm[[k, p]] = perm[[p, k]]
            l_mat[[k, p], :k] = l_mat[[p, k], :k]
        l_mat[k + 1 :, k] = u[k + 1 :, k] / u[k, k]
        u[k + 1 :, :] -= l_mat[k + 1 :, k : k + 1] * u[k : k + 1, :]
    # Rows were permuted as P_rows W = L U, so W = P L U with P = eye[argsort].
    return np.argsort(perm), l_mat, np.triu(u)


@keras.saving.register_keras_serializable(package="tfflows")
class InvertibleConv1x1Layer(FlowLayer):
    """Owns the c×c matrix of an :class:`~tfflows.bijectors.InvertibleConv1x1`.

    With ``lu=False`` the matrix W is one trainable weight (log|det W| from
    a QR decomposition, inverse by ``inv``). With ``lu=True``, W = P L (U + diag(s ·
    exp(log_diag))) with a fixed permutation P, unit lower-triangular L,
    strictly upper U, fixed signs s and trainable log|diag|, so log|det W| is
    Σ log_diag and the inverse costs two triangular solves. The trainable
    parts share one c×c weight ``lower_upper``: L's entries below its
    diagonal, U's above, log_diag on it (c² numbers, as many as W has).

    Both start from a random rotation drawn from ``seed`` (or from
    ``initial_matrix``, which must be invertible).

    Args:
      lu: use the LU parameterisation.
      seed: seed of the initial rotation; drawn at random when None.
      initial_matrix: optional c×c starting matrix instead of a rotation.
    """

    def __init__(
        self,
        lu: bool = False,
        seed: int | None = None,
        initial_matrix: list | np.ndarray | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lu = bool(lu)
        if seed is None:
            # NumPy's global generator, not a Generator: keras.utils.set_random_seed seeds it, so
            # a seeded program draws the same rotation every run.
            seed = int(np.random.randint(0, 2**31 - 1))  # noqa: NPY002
        self.seed = int(seed)
        self.initial_matrix = None
        if initial_matrix is not None:
            m = np.asarray(initial_matrix, dtype=np.float64)
            if m.ndim != 2 or m.shape[0] != m.shape[1]:
                raise ValueError(f"{self.name}: initial_matrix must be square [C, C], got shape {m.shape}.")
            sign, logdet = np.linalg.slogdet(m)
            if sign == 0 or not np.isfinite(logdet) or np.linalg.cond(m) > 1e12:
                raise ValueError(
                    f"{self.name}: initial_matrix must be invertible, got a singular matrix "
                    f"(condition number {np.linalg.cond(m):.3g})."
                )
            self.initial_matrix = m

    def build(self, x_shape: Shape, context_shape: Shape | None = None) -> None:
        self._check_input_shape(x_shape)
        c = x_shape[-1]
        if self.initial_matrix is not None and self.initial_matrix.shape[0] != c:
            raise ValueError(
                f"{self.name}: initial_matrix is {self.initial_matrix.shape[0]}x"
                f"{self.initial_matrix.shape[0]} but the input has {c} channels."
            )
        w0 = self.initial_matrix if self.initial_matrix is not None else random_rotation(c, self.seed)
        const = keras.initializers.Constant
        if not self.lu:
            self.kernel = self.add_weight(name="kernel", shape=(c, c), initializer=const(w0))
            return
        perm, l_mat, u_mat = lu_decompose(w0)
        diag = np.diag(u_mat)
        self.permutation = self.add_weight(
            name="permutation", shape=(c,), dtype="int32", trainable=False, initializer=const(perm)
        )
        self.sign = self.add_weight(
            name="sign", shape=(c,), trainable=False, initializer=const(np.sign(diag))
        )
        packed = np.tril(l_mat, -1) + np.triu(u_mat, 1) + np.diag(np.log(np.abs(diag)))
        self.lower_upper = self.add_weight(name="lower_upper", shape=(c, c), initializer=const(packed))

    def weight_matrix(self) -> tf.Tensor:
        """The current c×c matrix W."""
        self._require_built()
        if not self.lu:
            return tf.convert_to_tensor(self.kernel)
        return lu_weight(*self._lu_parts())[0]

    def _lu_parts(self):
        """(permutation, L, U, log|diag|, sign): lu_weight reads only the strict triangles."""
        packed = tf.convert_to_tensor(self.lower_upper)
        return (
            tf.convert_to_tensor(self.permutation),
            packed,
            packed,
            tf.linalg.diag_part(packed),
            tf.convert_to_tensor(self.sign),
        )

    def bijector(self, context: tf.Tensor | None = None) -> InvertibleConv1x1:
        self._require_built()
        if not self.lu:
            return InvertibleConv1x1(
                tf.convert_to_tensor(self.kernel), event_ndims=self.event_ndims, name=self.name
            )
        weight, inverse, log_abs_det = lu_weight(*self._lu_parts())
        return InvertibleConv1x1(weight, inverse, log_abs_det, event_ndims=self.event_ndims, name=self.name)

    def get_config(self) -> dict[str, Any]:
        m = None if self.initial_matrix is None else self.initial_matrix.tolist()
        return {**super().get_config(), "lu": self.lu, "seed": self.seed, "initial_matrix": m}
