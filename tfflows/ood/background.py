"""The background model of the likelihood ratio: a flow trained on perturbed images.

Ren et al. (2019, "Likelihood Ratios for Out-of-Distribution Detection",
NeurIPS) train the background model on inputs in which each pixel is, with
probability μ, replaced by a uniformly random value; the noise destroys the
semantic content while keeping population statistics such as the background
intensity, which the ratio log p_background(x) − log p(x) then cancels.
They found μ in 0.1–0.3 to work on Fashion-MNIST.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfflows.deprecation import old_argument_names

__all__ = ["perturb", "perturbed_dataset", "train_background"]


def _check_rate(rate: float) -> float:
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate: expected a replacement probability in [0, 1], got {rate!r}.")
    return float(rate)


def perturb(images: tf.Tensor, rate: float, seed: tf.Tensor, source_bits: int = 8) -> tf.Tensor:
    """x̃ = x where u ≥ rate, else a uniform random value in 0..2^source_bits − 1 (u ~ U[0, 1) per value).

    Args:
      images: integer pixels of any shape (uint8 usually).
      rate: μ, the probability that a value is replaced.
      seed: a shape-[2] int tensor: the same seed gives the same perturbation.
      source_bits: the bit depth of ``images``.
    """
    rate = _check_rate(rate)
    images = tf.convert_to_tensor(images)
    seed = tf.convert_to_tensor(seed, tf.int64)
    seed_a, seed_b = seed, seed + tf.constant([0, 1], tf.int64)
    replace = tf.random.stateless_uniform(tf.shape(images), seed=seed_a) < rate
    noise = tf.random.stateless_uniform(
        tf.shape(images), seed=seed_b, minval=0, maxval=2**source_bits, dtype=tf.int32
    )
    return tf.where(replace, tf.cast(noise, images.dtype), images)


@old_argument_names({"n_bits": "num_bits"})
def perturbed_dataset(
    images: np.ndarray,
    rate: float,
    *,
    batch_size: int = 64,
    num_bits: int = 8,
    source_bits: int = 8,
    seed: int | None = 0,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Training batches for a background model: shuffled, freshly perturbed and dequantized each epoch.

    Like :func:`tfflows.data.make_dataset` (float32 levels in [0, 2^num_bits)),
    with :func:`perturb` applied to the integer pixels before dequantization.
    """
    from tfflows.data.pipeline import PARALLEL_CALLS, PREFETCH_BATCHES, make_dataset, steady

    rate = _check_rate(rate)
    # make_dataset checks the images and yields integer levels; the noise goes in before dequantizing.
    plain = make_dataset(
        images,
        batch_size=batch_size,
        num_bits=source_bits,
        source_bits=source_bits,
        shuffle=True,
        repeat=repeat,
        dequantize=False,
        seed=seed,
    )
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    shift = 2 ** (source_bits - num_bits)

    def transform(batch, key):
        ints = perturb(tf.cast(batch, tf.int32), rate, tf.stack([key, tf.zeros_like(key)]), source_bits)
        levels = tf.cast(ints // shift, tf.float32)
        u = tf.random.stateless_uniform(tf.shape(levels), seed=tf.stack([key, tf.ones_like(key)]))
        return tf.minimum(levels + u, tf.math.nextafter(levels + 1.0, levels))

    return steady(
        tf.data.Dataset.zip((plain, keys))
        .map(transform, num_parallel_calls=PARALLEL_CALLS)
        .prefetch(PREFETCH_BATCHES)
    )


def train_background(
    model: Any,
    images: np.ndarray,
    rate: float = 0.2,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    time_limit: float | None = None,
    seed: int = 0,
    verbose: int = 0,
    source_bits: int = 8,
) -> Any:
    """Trains ``model`` (a fresh image flow, usually the in-distribution model's architecture)
    in place on ``images`` perturbed at ``rate``, and returns it.

    Args:
      model: an untrained :class:`~tfflows.models.FlowModel` with ``num_bits``;
        ``type(m).from_config(m.get_config())`` copies an architecture.
      images: uint8 ``[N, H, W, C]`` training images of the in-distribution data.
      rate: μ of :func:`perturb`; 0 trains a plain model.
      epochs, batch_size, lr, seed, verbose: as for ``fit``.
      time_limit: stop after this many seconds of training.
      source_bits: the bit depth of ``images``.
    """
    import keras

    from tfflows.callbacks import TimeLimit
    from tfflows.models.base import FlowModel
    from tfflows.training import make_optimizer

    if not isinstance(model, FlowModel) or len(model.event_shape) != 3 or model.num_bits is None:
        raise ValueError(
            f"model: expected a tfflows image FlowModel (with num_bits), got {type(model).__name__}."
        )
    images = np.asarray(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(model.event_shape):
        raise ValueError(
            f"images: expected [N, {', '.join(map(str, model.event_shape))}] for the "
            f"background model, got {list(images.shape)}."
        )
    if len(images) == 0:
        raise ValueError("images: expected at least one training image for the background model, got none.")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, got {epochs!r}.")
    if time_limit is not None and (
        isinstance(time_limit, bool)
        or not isinstance(time_limit, (int, float))
        or not 0 < time_limit < float("inf")
    ):
        raise ValueError(f"time_limit: expected a finite number of seconds > 0 or None, got {time_limit!r}.")
    keras.utils.set_random_seed(seed)
    data = perturbed_dataset(
        images, rate, batch_size=batch_size, num_bits=int(model.num_bits), source_bits=source_bits, seed=seed
    )
    model.compile(optimizer=make_optimizer(lr, 200, clipnorm=50.0))
    callbacks = [TimeLimit(time_limit)] if time_limit else []
    model.fit(data, epochs=epochs, callbacks=callbacks, verbose=verbose)
    return model
