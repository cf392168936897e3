"""The coder's side of the prior: quantized parameters and the probability tables, the same on every machine.

A network's float outputs may differ in their last bits between machines,
thread counts or oneDNN settings. The coder therefore never uses them
directly: each one is rounded to a grid (μ to 1/32, log s to 1/16, mixture
logits to 1/16, coupling translations to integers), and the encoder checks
that no value lies within :data:`GUARD` grid steps of a rounding boundary —
an image where one does is coded without the network (see
:mod:`tfflows.codec.coder`). From the rounded integers on, everything is
numpy arithmetic in float64 built from +, −, ×, ÷ and ``ldexp`` only (IEEE
754 rounds each of those exactly the same on every machine); ``exp`` is
:func:`exact_exp`, a fixed polynomial, not the platform's libm or numpy's
SIMD routine. The probabilities handed to ``constriction`` are thus
bit-identical wherever they are computed.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from tfflows.layers.idf import LOG_SCALE_MAX, LOG_SCALE_MIN

__all__ = [
    "GUARD",
    "LOGIT_STEPS",
    "LOG_SCALE_STEPS",
    "MEAN_STEPS",
    "Quantized",
    "exact_exp",
    "margin",
    "probabilities",
    "quantize",
]

MEAN_STEPS = 32
"""μ is rounded to a multiple of 1/MEAN_STEPS."""
LOG_SCALE_STEPS = 16
"""log s is rounded to a multiple of 1/LOG_SCALE_STEPS within [LOG_SCALE_MIN, LOG_SCALE_MAX]."""
LOGIT_STEPS = 16
"""Mixture logits are rounded to multiples of 1/LOGIT_STEPS."""
LOGIT_FLOOR = 40.0
"""A component whose logit is more than this below the largest gets weight e^-40 (not less)."""
GUARD = 1e-8
"""Smallest distance, in grid steps, that a value may have from a rounding boundary (x.5)."""

_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n·_LN2_HI is exact for |n| < 2**11
_LN2_LO = 1.90821492927058770002e-10
_INV_FACT = [1.0 / math.factorial(k) for k in range(14)]


def exact_exp(x: np.ndarray) -> np.ndarray:
    """e^x from +, −, × and ldexp only: the same bits on every IEEE-754 machine.

    x = n·ln 2 + r with |r| ≤ ½ ln 2, e^r by its Taylor polynomial of degree
    13 (relative error below 1e-16 there), then scaled by 2ⁿ. Inputs are
    clipped to [−700, 700].
    """
    x = np.clip(np.asarray(x, dtype=np.float64), -700.0, 700.0)
    n = np.rint(x * (1.0 / _LN2_HI))
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = np.full_like(r, _INV_FACT[13])
    for k in range(12, -1, -1):
        p = p * r + _INV_FACT[k]
    return np.ldexp(p, n.astype(np.int64))


def margin(grid_values: np.ndarray) -> np.ndarray:
    """Distance of each value (in grid steps) from the nearest rounding boundary k + ½."""
    frac = grid_values - np.floor(grid_values)
    return np.abs(frac - 0.5)


class Quantized:
    """Prior parameters on the coder's grid, per latent and mixture component.

    Attributes:
      mean: integer μ·MEAN_STEPS, clipped to the latent range, ``[..., K]``.
      log_scale: index of log s on its grid (0 for LOG_SCALE_MIN), ``[..., K]``.
      logit: integer logit·LOGIT_STEPS relative to the largest (≤ 0), ``[..., K]``.
      margin: per latent, the smallest distance of its raw values from a rounding boundary.
    """

    def __init__(
        self, mean: np.ndarray, log_scale: np.ndarray, logit: np.ndarray, margin: np.ndarray
    ) -> None:
        self.mean, self.log_scale, self.logit, self.margin = mean, log_scale, logit, margin


def _on_grid(values: np.ndarray, steps: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    # A value beyond the clip range rounds to its end whatever its last bits: its margin is 0.25.
    grid = np.clip(values * steps, low * steps - 0.25, high * steps + 0.25)
    return np.rint(grid).astype(np.int64), margin(grid)


def quantize(params: np.ndarray, lo: int, hi: int) -> Quantized:
    """Rounds ``[..., K, 3]`` float64 parameters (μ, log s, logits) onto the coder's grid."""
    params = np.asarray(params, dtype=np.float64)
    mean, m1 = _on_grid(params[..., 0], MEAN_STEPS, lo, hi)
    log_scale, m2 = _on_grid(params[..., 1], LOG_SCALE_STEPS, LOG_SCALE_MIN, LOG_SCALE_MAX)
    logits = params[..., 2] - np.max(params[..., 2], axis=-1, keepdims=True)
    logit, m3 = _on_grid(logits, LOGIT_STEPS, -LOGIT_FLOOR, 0.0)
    # The largest raw logit is exactly 0 after the shift; its margin is not at stake.
    logit = logit - np.max(logit, axis=-1, keepdims=True)
    low = np.min(np.minimum(np.minimum(m1, m2), m3), axis=-1)
    return Quantized(mean, log_scale - round(LOG_SCALE_MIN * LOG_SCALE_STEPS), logit, low)


@functools.lru_cache(maxsize=4)
def _mass_table(width: int) -> np.ndarray:
    """Bin masses σ((j + ½ − width − f/MEAN_STEPS)/s_i) − σ((j − ½ − width − f/MEAN_STEPS)/s_i).

    Rows: log-scale index i × fraction f; columns j = 0..2·width − 1 (the value
    j − width + … relative to the integer part of μ).
    """
    num_scales = round((LOG_SCALE_MAX - LOG_SCALE_MIN) * LOG_SCALE_STEPS) + 1
    inv_scale = exact_exp(-(LOG_SCALE_MIN + np.arange(num_scales) / LOG_SCALE_STEPS))
    offsets = (np.arange(2 * width + 1) - width + 0.5)[None, :] - (np.arange(MEAN_STEPS) / MEAN_STEPS)[
        :, None
    ]
    u = inv_scale[:, None, None] * offsets[None]
    cdf = (1.0 / (1.0 + exact_exp(-u))).reshape(num_scales * MEAN_STEPS, 2 * width + 1)
    return cdf[:, 1:] - cdf[:, :-1]


@functools.lru_cache(maxsize=4)
def _windows(width: int) -> np.ndarray:
    """Rows of :func:`_mass_table` seen through windows of ``width`` columns (a view, made once)."""
    return np.lib.stride_tricks.sliding_window_view(_mass_table(width), width, axis=1)


def probabilities(q: Quantized, lo: int, hi: int) -> np.ndarray:
    """``[..., hi − lo + 1]`` probabilities of each latent value lo..hi under the quantized mixture.

    Every entry is a float64 computed in one fixed order of IEEE operations
    (the tails beyond lo..hi are dropped; constriction renormalises).
    """
    width = hi - lo + 1
    windows = _windows(width)
    whole = np.floor_divide(q.mean, MEAN_STEPS)
    rows = q.log_scale * MEAN_STEPS + (q.mean - whole * MEAN_STEPS)  # [..., K]
    start = lo - whole + width - 1  # column of value lo
    weight = exact_exp(q.logit / LOGIT_STEPS)  # [..., K]
    total = weight[..., 0]
    for k in range(1, weight.shape[-1]):
        total = total + weight[..., k]
    # Σₖ (wₖ / total) · window, each product formed in place in its freshly gathered window.
    out = windows[rows[..., 0], start[..., 0]]
    out *= (weight[..., 0] / total)[..., None]
    for k in range(1, weight.shape[-1]):
        part = windows[rows[..., k], start[..., k]]
        part *= (weight[..., k] / total)[..., None]
        out += part
    return out
