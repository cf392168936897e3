"""Two-dimensional toy densities for testing and visualising flows.

Samples are float32 numpy arrays of shape ``[n, 2]``, drawn with
``np.random.default_rng(seed)`` so a seed fixes them exactly.

``"8gaussians"`` and ``"checkerboard"`` follow the generators of FFJORD
(Grathwohl et al., 2019, ``lib/toy_data.py``) exactly, so their known entropies
hold: a perfect model's test negative log-likelihood equals the entropy.
``"two_moons"`` follows FFJORD's ``moons`` (noisy half circles, scaled by 2 and
shifted) and ``"rings"`` draws i.i.d. points from FFJORD's four noisy rings.

References:
    Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud. "FFJORD: Free-form
    Continuous Dynamics for Scalable Reversible Generative Models." ICLR 2019.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["TOY_NAMES", "estimate_toy_entropy", "sample_toy", "toy_entropy", "toy_log_prob"]

TOY_NAMES: tuple[str, ...] = ("two_moons", "8gaussians", "checkerboard", "rings")
"""The 2-D toy densities by name."""

# FFJORD divides the 8-Gaussian samples by this constant (not sqrt(2)).
_GAUSSIANS_DIVISOR = 1.414
_GAUSSIANS_SCALE = 4.0
_GAUSSIANS_STD = 0.5
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_GAUSSIANS_CENTERS = _GAUSSIANS_SCALE * np.array(
    [
        (1.0, 0.0),
        (-1.0, 0.0),
        (0.0, 1.0),
        (0.0, -1.0),
        (_INV_SQRT2, _INV_SQRT2),
        (_INV_SQRT2, -_INV_SQRT2),
        (-_INV_SQRT2, _INV_SQRT2),
        (-_INV_SQRT2, -_INV_SQRT2),
    ]
)
_RING_RADII = 3.0 * np.array([1.2, 0.9, 0.55, 0.25])

# Known entropies in nats. 8gaussians: the figure FFJORD's generator is known
# to have (checked by `estimate_toy_entropy`); checkerboard: uniform on 8
# squares of area 4.
_ENTROPIES: dict[str, float] = {"8gaussians": 2.833, "checkerboard": math.log(32.0)}


def _check_name(name: str, allowed: tuple[str, ...] = TOY_NAMES) -> None:
    if name not in allowed:
        raise ValueError(f"Unknown toy density {name!r}; expected one of {list(allowed)}.")


def _two_moons(rng: np.random.Generator, n: int) -> np.ndarray:
    n_outer = n // 2
    angle = rng.uniform(0.0, math.pi, size=n)
    outer = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    inner = np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    x = np.where((np.arange(n) < n_outer)[:, None], outer, inner)
    x = x[rng.permutation(n)] + 0.1 * rng.standard_normal((n, 2))
    return x * 2.0 + np.array([-1.0, -0.2])


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    point = rng.standard_normal((n, 2)) * _GAUSSIANS_STD
    point += _GAUSSIANS_CENTERS[rng.integers(0, 8, size=n)]
    return point / _GAUSSIANS_DIVISOR


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    x1 = rng.uniform(size=n) * 4.0 - 2.0
    x2_ = rng.uniform(size=n) - rng.integers(0, 2, size=n) * 2.0
    x2 = x2_ + np.floor(x1) % 2
    return np.stack([x1, x2], axis=1) * 2.0


def _rings(rng: np.random.Generator, n: int) -> np.ndarray:
    radius = _RING_RADII[rng.integers(0, 4, size=n)]
    angle = rng.uniform(0.0, 2.0 * math.pi, size=n)
    x = np.stack([np.cos(angle), np.sin(angle)], axis=1) * radius[:, None]
    return x + rng.normal(scale=0.08, size=x.shape)


_SAMPLERS = {
    "two_moons": _two_moons,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "rings": _rings,
}


def sample_toy(name: str, n: int, seed: int | None = None) -> np.ndarray:
    """Draws ``n`` points from a 2-D toy density.

    Args:
        name: One of ``TOY_NAMES``: ``"two_moons"``, ``"8gaussians"``,
            ``"checkerboard"``, ``"rings"``.
        n: Number of points, a non-negative integer.
        seed: Seed for ``np.random.default_rng``; ``None`` draws fresh entropy.

    Returns:
        float32 array of shape ``[n, 2]``.

    Raises:
        ValueError: If ``name`` is unknown or ``n`` is negative.
    """
    _check_name(name)
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer; got {n!r}.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed must be an integer or None; got {seed!r}.")
    rng = np.random.default_rng(seed)
    return _SAMPLERS[name](rng, int(n)).astype(np.float32)


def toy_entropy(name: str) -> float | None:
    """Returns the known differential entropy of a toy density, in nats.

    Args:
        name: One of ``TOY_NAMES``.

    Returns:
        2.833 for ``"8gaussians"``, ``log 32`` (3.466) for ``"checkerboard"``
        and ``None`` where no exact figure is known.

    Raises:
        ValueError: If ``name`` is unknown.
    """
    _check_name(name)
    return _ENTROPIES.get(name)


def toy_log_prob(name: str, x: np.ndarray) -> np.ndarray:
    """Exact log-density of the ``"8gaussians"`` or ``"checkerboard"`` generator.

    ``8gaussians``: ``y = x / 1.414`` with ``x`` an equal mixture of
    ``N(c_k, 0.25 I)``, so ``log p(y) = log p_x(1.414 y) + 2 log 1.414``.
    ``checkerboard``: ``1/32`` on the 8 squares of side 2 in ``[-4, 4)^2``
    whose cell indices ``floor(y / 2)`` sum to an even number, 0 elsewhere.

    Args:
        name: ``"8gaussians"`` or ``"checkerboard"``.
        x: Points, shape ``[n, 2]``.

    Returns:
        float64 array of shape ``[n]`` (``-inf`` outside the support).

    Raises:
        ValueError: If ``name`` has no exact density here or ``x`` is not ``[n, 2]``.
    """
    _check_name(name, tuple(_ENTROPIES))
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape [n, 2]; got {x.shape}.")
    if np.isnan(x).any():
        raise ValueError(f"x must hold numbers (no NaN); got {int(np.isnan(x).sum())} NaN.")
    if name == "checkerboard":
        cell = np.floor(x / 2.0)
        inside = np.all((x >= -4.0) & (x < 4.0), axis=1) & (cell.sum(axis=1) % 2 == 0)
        return np.where(inside, -math.log(32.0), -np.inf)
    z = x * _GAUSSIANS_DIVISOR
    centers = _GAUSSIANS_CENTERS
    sq = (z**2).sum(1)[:, None] - 2.0 * z @ centers.T + (centers**2).sum(1)[None]
    var = _GAUSSIANS_STD**2
    log_comp = -0.5 * sq / var - math.log(2.0 * math.pi * var) - math.log(8.0)
    peak = log_comp.max(axis=1)
    log_px = peak + np.log(np.exp(log_comp - peak[:, None]).sum(axis=1))
    return log_px + 2.0 * math.log(_GAUSSIANS_DIVISOR)


def estimate_toy_entropy(name: str, n: int = 1_000_000, seed: int = 0) -> float:
    """Monte Carlo estimate of ``-E[log p(x)]`` under the exact generator.

    The standard error is about ``1 / sqrt(n)`` nats for ``"8gaussians"`` and 0
    for ``"checkerboard"``.

    Args:
        name: ``"8gaussians"`` or ``"checkerboard"``.
        n: Number of samples.
        seed: Seed for the samples.

    Returns:
        The estimated entropy in nats.

    Raises:
        ValueError: If ``name`` has no exact density here.
    """
    _check_name(name, tuple(_ENTROPIES))
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (samples); got {n!r}.")
    rng = np.random.default_rng(seed)
    return float(-np.mean(toy_log_prob(name, _SAMPLERS[name](rng, n))))
