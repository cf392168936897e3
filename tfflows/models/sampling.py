"""Sampling's rules, shared by every flow model: its arguments, its noise, its non-finite samples.

``FlowModel.sample`` draws ε ~ N(0, I), scales it by the temperature, clips it
when asked, decodes it, then reports (and, with ``clip_output``, repairs)
samples the inverse flow let overflow. The checks and that report live here.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from tfflows.bijectors.base import as_python_number
from tfflows.data.spec import DataSpec
from tfflows.distribution import stateless_seed
from tfflows.guard import finite_rows

__all__ = ["check_sample_args", "finish_samples", "latent_noise", "real_number"]


def real_number(value: Any) -> float | None:
    """``value`` as a Python float when it is one real number (a Python or NumPy number, or an
    eager 0-d tensor: :func:`tfflows.bijectors.base.as_python_number`); None otherwise (bools are
    not numbers)."""
    value = as_python_number(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def check_sample_args(
    spec: DataSpec, num_samples: Any, temperature: Any, clip_latent: Any, clip_output: bool
) -> tuple[int, float, float | None]:
    """``sample``'s arguments checked: an int >= 0, a finite temperature >= 0, a clip > 0 or None.

    Raises:
      ValueError: naming the argument, what was expected and what came.
    """
    name = spec.owner
    if not isinstance(clip_output, (bool, np.bool_)):
        raise ValueError(f"{name}: clip_output must be True or False, got {clip_output!r}.")
    if clip_output and not spec.models_pixel_levels:
        raise ValueError(
            f"{name}: clip_output is for image models with num_bits (a data range to "
            f"clamp to), got a model with event shape {spec.event_shape}."
        )
    if (
        isinstance(num_samples, (bool, np.bool_))
        or not isinstance(num_samples, (int, np.integer))
        or num_samples < 0
    ):
        raise ValueError(f"{name}: num_samples must be an integer >= 0, got {num_samples!r}.")
    t = real_number(temperature)
    if t is None or not math.isfinite(t) or t < 0:
        shown = temperature if t is None else t  # a scalar tensor shows as its number
        raise ValueError(f"{name}: temperature must be a finite number >= 0, got {shown!r}.")
    c = None
    if clip_latent is not None:
        c = real_number(clip_latent)
        if c is None or not math.isfinite(c) or c <= 0:
            raise ValueError(f"{name}: clip_latent must be a finite number > 0 or None, got {clip_latent!r}.")
    return int(num_samples), t, c


def latent_noise(spec: DataSpec, num_samples: int, seed: Any) -> tf.Tensor:
    """ε ~ N(0, I) of shape [num_samples, num_dims]; deterministic for a seed (see stateless_seed)."""
    key = stateless_seed(seed, spec.owner)
    shape = (num_samples, spec.num_dims)
    if key is None:
        return tf.random.normal(shape, dtype=spec.dtype)
    return tf.random.stateless_normal(shape, seed=key, dtype=spec.dtype)


def finish_samples(spec: DataSpec, x: tf.Tensor, temperature: float, clip_output: bool) -> tf.Tensor:
    """Warns (eagerly) of samples with inf or NaN; with ``clip_output`` clamps them into the data range.

    ``clip_output`` maps inf to the nearer end of [0, 2ⁿ) and NaN to 0, so the
    result is always a drawable image.
    """
    if tf.executing_eagerly():
        n = int(x.shape[0])
        bad = int(n - tf.reduce_sum(tf.cast(finite_rows(x), tf.int32)))
        if bad:
            repaired = (
                " clip_output clamped them into the data range (NaN to 0)."
                if clip_output
                else " sample(..., clip_output=True) clamps them into the data range."
            )
            warnings.warn(
                f"{spec.owner}: {bad} of {n} samples at temperature {temperature} have inf or "
                "NaN values (the inverse flow overflowed); a lower temperature or a longer "
                "trained model avoids this." + repaired,
                RuntimeWarning,
                stacklevel=3,
            )
    if clip_output:
        top = float(np.nextafter(np.float32(2.0 ** int(spec.num_bits or 8)), np.float32(0.0)))
        x = tf.clip_by_value(tf.where(tf.math.is_nan(x), tf.zeros_like(x), x), 0.0, top)
    return x
