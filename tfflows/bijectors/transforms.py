"""Elementwise monotone maps whose parameters come from a network: affine, additive, spline.

One protocol serves the coupling layers (:class:`~tfflows.bijectors.Coupling`)
and the autoregressive ones (:class:`~tfflows.bijectors.MaskedAutoregressive`):
a transform is a small object built from constants (a scale function, a
number of bins); the network's raw output ``h`` is its parameter tensor,
given per call. Adding a transform is one small class here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors

__all__ = [
    "ElementwiseTransform",
    "AffineTransform",
    "AdditiveTransform",
    "SplineTransform",
    "SCALE_FNS",
    "TRANSFORMS",
    "LOG_SCALE_BOUND",
    "MIN_BIN",
    "MIN_SLOPE",
    "bounded_log_scale",
    "log_scale_of",
    "make_transform",
    "rational_quadratic_spline",
    "spline_and_log_det",
    "register_transform",
    "spline_params_per_entry",
    "transform_names",
    "TransformFactory",
]

SCALE_FNS = ("sigmoid", "tanh", "exp", "bounded", "scaled_sigmoid")
"""How an affine transform turns the conditioner's raw output into a scale (Glow's sigmoid,
RealNVP's tanh-bounded, plain exp, bounded, Jet's 2·sigmoid)."""
TRANSFORMS = ("affine", "additive", "spline")
LOG_SCALE_BOUND = 7.0
MIN_BIN = 1e-3
MIN_SLOPE = 1e-3
# softplus(_SLOPE_SHIFT) + MIN_SLOPE = 1: a zero conditioner gives unit slopes.
_SLOPE_SHIFT = math.log(math.expm1(1.0 - MIN_SLOPE))
_LOG_2 = math.log(2.0)


def bounded_log_scale(raw: tf.Tensor, bound: float = LOG_SCALE_BOUND) -> tf.Tensor:
    """A soft clamp of the raw log-scale into (−bound, bound): raw / (1 + |raw| / bound)."""
    return raw / (1.0 + tf.abs(raw) / bound)


def log_scale_of(raw: tf.Tensor, scale_fn: str, tanh_factor: tf.Tensor | None = None) -> tf.Tensor:
    """log s for the raw conditioner output u under ``scale_fn``.

    - ``"sigmoid"``: s = sigmoid(u + 2) ∈ (0, 1) (Glow; u = 0 gives ≈ 0.881);
    - ``"tanh"``: s = exp(a · tanh(u)), a = ``tanh_factor`` (default 1) (RealNVP);
    - ``"exp"``: s = exp(u), unbounded;
    - ``"bounded"``: log s = u / (1 + |u| / 7) ∈ (−7, 7) (MAF, TarFlow);
    - ``"scaled_sigmoid"``: s = 2 · sigmoid(u) ∈ (0, 2) (Jet; u = 0 gives 1).
    """
    if scale_fn == "sigmoid":
        return tf.math.log_sigmoid(raw + 2.0)
    if scale_fn == "tanh":
        factor = 1.0 if tanh_factor is None else tf.cast(tanh_factor, raw.dtype)
        return factor * tf.tanh(raw)
    if scale_fn == "exp":
        return raw
    if scale_fn == "bounded":
        return bounded_log_scale(raw)
    return tf.math.log_sigmoid(raw) + _LOG_2


def spline_params_per_entry(num_bins: int) -> int:
    """Conditioner outputs per moving entry: K widths, K heights, K − 1 slopes."""
    return 3 * num_bins - 1


def rational_quadratic_spline(
    h: tf.Tensor, num_bins: int, bound: float
) -> tfp.bijectors.RationalQuadraticSpline:
    """Monotone splines on [−B, B] (identity outside) from raw parameters h: [N, M, 3K − 1].

    Widths and heights are softmaxes scaled to 2B with a floor of ``1e-3``;
    slopes are softplus with a shift that makes h = 0 give equal bins and
    unit slopes, i.e. the identity. Callers fold leading axes into N first:
    oneDNN's softmax takes tensors of rank 5 at most.
    """
    k, width = num_bins, 2.0 * bound
    w, hh, s = tf.split(h, [k, k, k - 1], axis=-1)  # one op (its gradient one concat), not three slices
    widths = tf.nn.softmax(w, axis=-1) * (width - k * MIN_BIN) + MIN_BIN
    heights = tf.nn.softmax(hh, axis=-1) * (width - k * MIN_BIN) + MIN_BIN
    slopes = tf.nn.softplus(s + _SLOPE_SHIFT) + MIN_SLOPE
    return tfb.RationalQuadraticSpline(widths, heights, slopes, range_min=-bound)


def _padded(t: tf.Tensor, before: int, after: int, value: float | tf.Tensor = 0.0) -> tf.Tensor:
    """``t`` with ``before`` and ``after`` entries of ``value`` added to its last axis."""
    return tf.pad(t, [[0, 0]] * (t.shape.rank - 1) + [[before, after]], constant_values=value)


def _knots(sizes: tf.Tensor, start: tf.Tensor) -> tf.Tensor:
    """The K + 1 knot positions ``start, start + sizes[0], ...`` of bins of ``sizes`` [..., K]."""
    return _padded(tf.cumsum(sizes, axis=-1) + start, 1, 0, start)


def spline_and_log_det(
    spline: tfp.bijectors.RationalQuadraticSpline, u: tf.Tensor, forward: bool
) -> tuple[tf.Tensor, tf.Tensor]:
    """(g(u), log g′(u)) if ``forward``, else (g⁻¹(u), log |dg⁻¹/du|), each entry's bin found once.

    TFP's spline finds each entry's bin in ``forward`` and again in
    ``forward_log_det_jacobian`` (and its inverse again among the y knots),
    and reads the bin's two knots and slopes with six batched gathers, whose
    gradients (index grids, tiles and segment sums) are most of a spline
    flow's training-step graph. Here one lookup serves the value and the
    log-derivative, and the bin is read with two one-hot masks over the
    K + 1 knots (x, y and slope stacked), whose gradient is a product:
    VectorNSF's training step: 11,335 → 5,129 nodes with the splits (bench/step_graph.py).
    The knots, the bin rule (entries on a knot belong to the bin above; those
    at or beyond the ends pass through with log-derivative 0) and the formulas
    are the paper's (Durkan et al. 2019, appendix A) as TFP evaluates them, so
    the values are TFP's; the test compares both directions and both
    log-dets with TFP's methods.
    """
    start = tf.convert_to_tensor(spline.range_min, u.dtype)
    kx, ky = _knots(spline.bin_widths, start), _knots(spline.bin_heights, start)
    kd = _padded(spline.knot_slopes, 1, 1, 1.0)  # unit slopes at both ends
    count = spline.bin_widths.shape[-1]
    first, interior, last = tf.split(kx if forward else ky, [1, count - 1, 1], axis=-1)
    first, last = tf.squeeze(first, -1), tf.squeeze(last, -1)
    outside = (u <= first) | (u >= last)
    inner = tf.where(outside, first, u)  # outside entries: the first bin (finite, unused)
    # The bin: how many interior knots lie at or below the entry.
    bin_ = tf.reduce_sum(tf.cast(inner[..., None] >= interior, tf.int32), axis=-1)
    stacked = tf.stack([kx, ky, kd], axis=-2)  # [..., 3, K + 1]
    low = tf.reduce_sum(stacked * tf.one_hot(bin_, count + 1, dtype=u.dtype)[..., None, :], axis=-1)
    high = tf.reduce_sum(stacked * tf.one_hot(bin_ + 1, count + 1, dtype=u.dtype)[..., None, :], axis=-1)
    x_k, y_k, d_k = tf.unstack(low, axis=-1)
    x_kp1, y_kp1, d_kp1 = tf.unstack(high, axis=-1)
    w_k, h_k = x_kp1 - x_k, y_kp1 - y_k
    s_k = h_k / w_k
    if forward:
        relx = (inner - x_k) / w_k
        inside = y_k + (h_k * (s_k * relx**2 + d_k * relx * (1 - relx))) / (
            s_k + (d_kp1 + d_k - 2 * s_k) * relx * (1 - relx)
        )
        v = tf.where(outside, u, inside)
    else:
        rely = tf.where(outside, tf.zeros([], u.dtype), u - y_k)
        term = rely * (d_kp1 + d_k - 2 * s_k)
        a, b, c = h_k * (s_k - d_k) + term, h_k * d_k - term, -s_k * rely
        # This form of the quadratic's root stays accurate for small 4ac.
        relx = tf.where(tf.equal(rely, 0), tf.zeros([], a.dtype), (2 * c) / (-b - tf.sqrt(b**2 - 4 * a * c)))
        v = tf.where(outside, u, relx * w_k + x_k)
    relx = tf.where(outside, tf.constant(0.5, u.dtype), relx)
    log_derivative = (
        2 * tf.math.log(s_k)
        + tf.math.log(d_kp1 * relx**2 + 2 * s_k * relx * (1 - relx) + d_k * (1 - relx) ** 2)
        - 2 * tf.math.log((d_kp1 + d_k - 2 * s_k) * relx * (1 - relx) + s_k)
    )
    log_derivative = tf.where(outside, tf.zeros([], u.dtype), log_derivative)
    return v, log_derivative if forward else -log_derivative


class ElementwiseTransform:
    """An elementwise monotone map u ↦ v whose parameters come from a conditioner.

    ``params_per_entry`` raw parameters P per entry of u, laid out
    parameter-major in the last axis of the conditioner's output: with D
    entries in u's last axis, h[..., p·D + i] is parameter p of entry i
    (a transform may say otherwise, as :class:`SplineTransform` with
    ``entry_major``). A zero h gives the identity (up to a constant scale
    for Glow's ``"sigmoid"``), so a fresh, zero-output conditioner makes an
    identity step.

    ``__call__(h, u, to_latent)`` maps u in the data → latent direction
    when ``to_latent`` and in the latent → data direction otherwise, and
    returns v (u's shape) and log|dv/du| per entry (u's shape).
    """

    params_per_entry: int = 2
    is_constant_jacobian: bool = False
    """True when the log-det does not depend on the input (additive)."""

    def __call__(self, h: tf.Tensor, u: tf.Tensor, to_latent: bool) -> tuple[tf.Tensor, tf.Tensor]:
        raise NotImplementedError


class AffineTransform(ElementwiseTransform):
    """v = u · s + t or its inverse, with h = [t, raw log-scale] and s from ``scale_fn``.

    Which direction is the data → latent one depends on the flow family:

    - ``maps_to_latent=True`` (couplings: NICE, RealNVP, Glow, Jet):
      latent side z = x · s + t, data side x = (z − t) / s; log-det (to
      the latent) Σ log s.
    - ``maps_to_latent=False`` (MAF, IAF): the parameters describe the
      sampling map x = z · s + t, so the latent side is z = (x − t) / s;
      log-det (to the latent) −Σ log s.

    Args:
      scale_fn: how the raw output becomes log s (see :func:`log_scale_of`).
      tanh_factor: the per-entry factor a of ``scale_fn="tanh"``.
      maps_to_latent: see above.
    """

    params_per_entry = 2

    def __init__(
        self,
        scale_fn: str = "bounded",
        tanh_factor: tf.Tensor | None = None,
        maps_to_latent: bool = False,
        name: str = "AffineTransform",
    ) -> None:
        if scale_fn not in SCALE_FNS:
            raise ValueError(f"{name}: scale_fn must be one of {SCALE_FNS}, got {scale_fn!r}.")
        self.scale_fn, self.tanh_factor, self.maps_to_latent = scale_fn, tanh_factor, maps_to_latent

    def __call__(self, h: tf.Tensor, u: tf.Tensor, to_latent: bool) -> tuple[tf.Tensor, tf.Tensor]:
        shift, raw = tf.split(h, 2, axis=-1)
        log_scale = log_scale_of(raw, self.scale_fn, self.tanh_factor)
        if to_latent == self.maps_to_latent:
            return u * tf.exp(log_scale) + shift, log_scale
        return (u - shift) * tf.exp(-log_scale), -log_scale


class AdditiveTransform(ElementwiseTransform):
    """Latent side z = x + t, data side x = z − t, with h = t; log-det 0 (NICE)."""

    params_per_entry = 1
    is_constant_jacobian = True

    def __call__(self, h: tf.Tensor, u: tf.Tensor, to_latent: bool) -> tuple[tf.Tensor, tf.Tensor]:
        # u · 1 + t as the affine map with log s = 0 computed it: the same bits.
        v = u + h if to_latent else u - h
        return v, tf.zeros_like(u)


class SplineTransform(ElementwiseTransform):
    """Latent side z = g(x), data side x = g⁻¹(z): a monotone rational-quadratic spline per entry.

    g lives on [−B, B] (identity outside, unit slopes at ±B); h holds, per
    entry, K widths, K heights and K − 1 interior slopes (see
    :func:`rational_quadratic_spline`). The spline is TFP's
    ``tfb.RationalQuadraticSpline``, each entry's bin looked up once for the
    value and the log-derivative (:func:`spline_and_log_det`); the inverse
    solves a quadratic per entry.

    Args:
      num_bins: K ≥ 2.
      bound: B > 0.
      entry_major: h's last axis holds entry i's 3K − 1 parameters together
        (h[..., i·P + p]) instead of parameter-major; the spline couplings
        have always read their conditioner's output that way.

    References:
      Durkan, Bekasov, Murray, Papamakarios. Neural Spline Flows. NeurIPS 2019.
    """

    def __init__(
        self, num_bins: int = 8, bound: float = 4.0, entry_major: bool = False, name: str = "SplineTransform"
    ) -> None:
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
            raise ValueError(f"{name}: num_bins must be an integer >= 2, got {num_bins!r}.")
        if not bound > 0:
            raise ValueError(f"{name}: bound must be > 0, got {bound!r}.")
        self.num_bins, self.bound, self.entry_major = num_bins, float(bound), bool(entry_major)
        self.params_per_entry = spline_params_per_entry(num_bins)

    def __call__(self, h: tf.Tensor, u: tf.Tensor, to_latent: bool) -> tuple[tf.Tensor, tf.Tensor]:
        dim, per = u.shape[-1], self.params_per_entry
        # Leading axes folded into one: oneDNN's softmax takes rank <= 5.
        if self.entry_major:
            h = tf.reshape(h, [-1, dim, per])
        else:
            h = tf.transpose(tf.reshape(h, [-1, per, dim]), [0, 2, 1])
        spline = rational_quadratic_spline(h, self.num_bins, self.bound)
        v, log_det = spline_and_log_det(spline, tf.reshape(u, [-1, dim]), to_latent)
        shape = tf.shape(u)
        return tf.reshape(v, shape), tf.reshape(log_det, shape)


TransformFactory = Callable[..., ElementwiseTransform]
"""``factory(num_bins=, bound=, name=, scale_fn=, tanh_factor=, maps_to_latent=, entry_major=)``:
an :class:`ElementwiseTransform`; a factory uses the keywords it needs and ignores the rest."""

_REGISTRY: dict[str, TransformFactory] = {
    "affine": lambda scale_fn, tanh_factor, maps_to_latent, name, **_: AffineTransform(
        scale_fn, tanh_factor, maps_to_latent, name=name
    ),
    "additive": lambda **_: AdditiveTransform(),
    "spline": lambda num_bins, bound, entry_major, name, **_: SplineTransform(
        num_bins, bound, entry_major, name=name
    ),
}


def register_transform(name: str, factory: TransformFactory, overwrite: bool = False) -> None:
    """Adds a coupling transform: ``CouplingLayer(transform=name)``, ``Glow(coupling=name)`` and
    ``tfflows train --coupling name`` then build it with ``factory`` (see :data:`TransformFactory`).

    Raises:
      ValueError: a name that is not a non-empty string, or one taken (unless ``overwrite``).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_transform: name must be a non-empty string, got {name!r}.")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"register_transform: a transform named {name!r} is registered already; "
            "pass overwrite=True to replace it."
        )
    if not callable(factory):
        raise ValueError(f"register_transform: factory must be callable, got {type(factory).__name__}.")
    _REGISTRY[name] = factory


def transform_names() -> tuple[str, ...]:
    """Every registered transform name, the built-ins first."""
    return tuple(_REGISTRY)


def make_transform(
    transform: str = "affine",
    num_bins: int = 8,
    bound: float = 4.0,
    name: str = "transform",
    scale_fn: str = "bounded",
    tanh_factor: tf.Tensor | None = None,
    maps_to_latent: bool = False,
    entry_major: bool = False,
) -> ElementwiseTransform:
    """The :class:`ElementwiseTransform` registered as ``transform`` (see :func:`register_transform`).

    The defaults are the autoregressive flows' (MAF's affine convention and
    bounded log-scale); the couplings pass their own.
    """
    if transform not in _REGISTRY:
        raise ValueError(f"{name}: transform must be one of {transform_names()}, got {transform!r}.")
    made = _REGISTRY[transform](
        num_bins=num_bins,
        bound=bound,
        name=name,
        scale_fn=scale_fn,
        tanh_factor=tanh_factor,
        maps_to_latent=maps_to_latent,
        entry_major=entry_major,
    )
    if not isinstance(made, ElementwiseTransform):
        raise ValueError(
            f"{name}: the factory of transform {transform!r} returned a "
            f"{type(made).__name__}, expected an ElementwiseTransform."
        )
    return made
