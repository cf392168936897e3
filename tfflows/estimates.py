"""Monte Carlo estimates for distributions without closed forms: entropy and KL, with standard errors."""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

from tfflows.distribution import stateless_seed
from tfflows.typing import Seed

tfd = tfp.distributions

__all__ = ["MonteCarloEstimate", "monte_carlo_entropy", "monte_carlo_kl"]


class MonteCarloEstimate(NamedTuple):
    """A Monte Carlo mean and its standard error s/√n (both of the batch shape)."""

    estimate: tf.Tensor
    standard_error: tf.Tensor


def _check_estimator_args(fn: str, num_samples, dists: dict[str, Any]) -> int:
    for key, dist in dists.items():
        if not isinstance(dist, tfd.Distribution):
            raise ValueError(
                f"{fn}: {key} must be a tfp.distributions.Distribution (e.g. "
                f"model.distribution), got {type(dist).__name__}."
            )
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples < 2:
        raise ValueError(
            f"{fn}: num_samples must be an integer >= 2 (a standard error needs two), got {num_samples!r}."
        )
    return int(num_samples)


def _mean_and_error(values: tf.Tensor, dtype) -> MonteCarloEstimate:
    values = tf.cast(values, tf.float64)  # sums of many terms: keep the rounding out of the estimate
    n = tf.cast(tf.shape(values)[0], tf.float64)
    mean = tf.reduce_mean(values, axis=0)
    var = tf.reduce_sum(tf.square(values - mean), axis=0) / (n - 1.0)
    return MonteCarloEstimate(tf.cast(mean, dtype), tf.cast(tf.sqrt(var / n), dtype))


def monte_carlo_entropy(
    dist: tfp.distributions.Distribution, num_samples: int = 1000, seed: Seed = None
) -> MonteCarloEstimate:
    """H[p] ≈ −(1/n) Σᵢ log p(xᵢ), xᵢ ~ p, with its standard error.

    Args:
      dist: any TFP distribution, e.g. ``model.distribution``.
      num_samples: n ≥ 2.
      seed: None, an int or a stateless ``[2]`` seed (:func:`stateless_seed`).

    Returns:
      ``MonteCarloEstimate(estimate, standard_error)`` in nats, each of ``dist``'s batch shape.
    """
    n = _check_estimator_args("monte_carlo_entropy", num_samples, {"dist": dist})
    _, log_p = dist.experimental_sample_and_log_prob(n, seed=stateless_seed(seed, "monte_carlo_entropy"))
    return _mean_and_error(-log_p, log_p.dtype)


def monte_carlo_kl(
    p: tfp.distributions.Distribution,
    q: tfp.distributions.Distribution,
    num_samples: int = 1000,
    seed: Seed = None,
) -> MonteCarloEstimate:
    """KL(p ‖ q) ≈ (1/n) Σᵢ [log p(xᵢ) − log q(xᵢ)], xᵢ ~ p, with its standard error.

    Args:
      p: the distribution sampled from (e.g. a flow's ``.distribution``).
      q: any distribution on the same events.
      num_samples: n ≥ 2.
      seed: None, an int or a stateless ``[2]`` seed (:func:`stateless_seed`).

    Returns:
      ``MonteCarloEstimate(estimate, standard_error)`` in nats.
    """
    n = _check_estimator_args("monte_carlo_kl", num_samples, {"p": p, "q": q})
    if not p.event_shape.is_compatible_with(q.event_shape):
        raise ValueError(
            f"monte_carlo_kl: p and q must have the same event shape, got "
            f"{p.event_shape} and {q.event_shape}."
        )
    x, log_p = p.experimental_sample_and_log_prob(n, seed=stateless_seed(seed, "monte_carlo_kl"))
    log_q = q.log_prob(tf.cast(x, q.dtype))
    return _mean_and_error(tf.cast(log_p, tf.float64) - tf.cast(log_q, tf.float64), log_p.dtype)
