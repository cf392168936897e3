"""tf.data pipelines: bit reduction and uniform dequantization of images, toys.

A flow models a density on continuous values, so integer pixels ``k`` are
spread over ``[k, k + 1)`` by adding ``u ~ U[0, 1)`` (Theis et al., 2016). The
pipeline yields values in ``[0, 2^num_bits)``; the model divides by ``2^num_bits``
itself and accounts for that scaling in its log-likelihood.

References:
    Theis, van den Oord, Bethge. "A note on the evaluation of generative
    models." ICLR 2016.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfflows.data.pixels import (
    bin_centres,
    check_bits,
    dequantize,
    integer_pixel_bits,
    pixel_levels,
    quantize,
)
from tfflows.data.toys import sample_toy
from tfflows.deprecation import renamed_argument

__all__ = [
    "IMAGE_KEYS",
    "LABEL_KEYS",
    "bin_centres",
    "dequantize",
    "image_key",
    "integer_pixel_bits",
    "label_key",
    "make_dataset",
    "pixel_levels",
    "repeating_batches",
    "steady",
    "toy_dataset",
]

# Fixed parallelism instead of tf.data's autotuner (see ``steady``).
PARALLEL_CALLS = max(
    1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
)
PREFETCH_BATCHES = 2


def steady(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` with tf.data's autotuner turned off.

    Deleting an exhausted iterator waits for the autotuner's background
    thread, which sleeps between its runs for longer and longer as an epoch
    goes on. Measured in ``fit`` on a 2-core CPU, each new Fashion-MNIST
    epoch started up to tens of seconds late, 17% of a 10-minute run
    (``time_breakdown_s["epoch_start"]``). tfflows' pipelines are cheap beside
    a training step, so fixed parallelism and a two-batch prefetch lose
    nothing.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def repeating_batches(
    x: Any,
    y: Any = None,
    sample_weight: Any = None,
    *,
    batch_size: int,
    shuffle: bool,
    full_batches: bool = False,
) -> tuple[tf.data.Dataset, int] | None:
    """In-memory arrays as an endless dataset of their batches, pass after pass; and the batches per pass.

    What Keras's ``fit`` makes of arrays, as one dataset that repeats: each
    pass (an epoch, with ``steps_per_epoch`` set to the second value) goes
    through every row once, in a new random order if ``shuffle``, the last
    batch short if the rows do not divide evenly; floats not in Keras's
    ``floatx`` are cast to it, as Keras does. Given to ``fit`` so, one
    iterator serves the whole run, where Keras's own adapter builds two per
    epoch (and two per ``evaluate``), each with tf.data's autotuner to wait
    for (see :func:`steady`): for a small table most of an epoch's time.

    With ``full_batches`` every batch has the same, known number of rows
    (``batch_size``, or every row when there are fewer), so the step that
    reads it is built for one fixed shape, which builds faster than one for
    any batch size: the short last batch is filled up with repeats of its
    first row weighted 0, and the batches are ``(x, y, weights)`` (``y`` a
    placeholder of zeros when there is none; the weights the given sample
    weights, or 1, on the real rows) — a weighted mean over them is the
    short batch's.

    Without ``full_batches`` the batches have Keras's structure
    (``keras.utils.pack_x_y_sample_weight``).

    Args:
      x: a NumPy array or tensor, or a tuple, list or dict of them.
      y: targets (a conditional model's labels or context), or None.
      sample_weight: a weight per row, or None.
      batch_size: rows per batch.
      shuffle: draw a new order for every pass.
      full_batches: fill up the last batch, as above.

    Returns:
      ``(dataset, batches per pass)``, or None when the data hold anything
      but arrays and tensors, or arrays of different or zero lengths (Keras's
      own handling then applies, and says what is wrong).
    """
    leaves = tf.nest.flatten([part for part in (x, y, sample_weight) if part is not None])
    if not leaves or not all(isinstance(a, (np.ndarray, tf.Tensor)) and len(a.shape) > 0 for a in leaves):
        return None
    lengths = {a.shape[0] for a in leaves}
    if len(lengths) != 1 or not isinstance(length := lengths.pop(), int) or length < 1:
        return None
    floatx = tf.as_dtype(keras.backend.floatx())

    def as_tensor(a: Any) -> tf.Tensor:
        t = tf.convert_to_tensor(a)
        return tf.cast(t, floatx) if t.dtype.is_floating and t.dtype != floatx else t

    x, y, sample_weight = (
        None if part is None else tf.nest.map_structure(as_tensor, part) for part in (x, y, sample_weight)
    )
    order = tf.data.Dataset.range(length)
    if shuffle:
        order = order.shuffle(length, reshuffle_each_iteration=True)
    size = min(batch_size, length) if full_batches else batch_size

    def take(part: Any, rows: tf.Tensor) -> Any:
        return None if part is None else tf.nest.map_structure(lambda t: tf.gather(t, rows), part)

    def gather(rows: tf.Tensor) -> Any:
        if not full_batches:
            return keras.utils.pack_x_y_sample_weight(take(x, rows), take(y, rows), take(sample_weight, rows))
        real = tf.size(rows)
        rows = tf.ensure_shape(tf.concat([rows, tf.fill([size - real], rows[0])], 0), [size])
        weights = tf.cast(tf.range(size) < real, floatx)
        if sample_weight is not None:
            weights *= tf.cast(take(sample_weight, rows), floatx)
        return take(x, rows), tf.zeros([size], floatx) if y is None else take(y, rows), weights

    count = math.ceil(length / size)
    batches = order.batch(size).map(gather, num_parallel_calls=PARALLEL_CALLS)
    if full_batches and not shuffle:
        # The same batches, made once (one pass, stacked) and stored: a new iterator over them
        # (Keras starts one for every validation pass) costs 0.3 ms instead of the 6-7 ms of one
        # over the mapped, prefetched pipeline (bench/iterator_cost.py, 2-core EPYC).
        one_pass = next(iter(steady(batches.batch(count))))
        return steady(tf.data.Dataset.from_tensor_slices(one_pass).repeat()), count
    return steady(batches.repeat().prefetch(PREFETCH_BATCHES)), count


def _bits_needed(top: int) -> int:
    """The fewest bits (at least 1) that hold the integer ``top``."""
    return max(1, int(top).bit_length())


def _check_source_range(top: int, source_bits: int) -> None:
    """Raises when the data's maximum ``top`` does not fit ``source_bits``, or looks far too small.

    Data stated as ``source_bits`` whose maximum is below 2^(source_bits − 3)
    (under 32 for 8-bit data) was almost surely given in a smaller range,
    such as the digits' 0..16 with the default ``source_bits=8``: reducing it
    to ``num_bits`` would silently keep only its top few levels.
    """
    if top >= 2**source_bits:
        raise ValueError(
            f"images must lie in [0, {2**source_bits}) for source_bits={source_bits}; "
            f"got a maximum of {top} (pass source_bits={_bits_needed(top)} if that is the range)."
        )
    if source_bits > 3 and top < 2 ** (source_bits - 3):
        raise ValueError(
            f"images stated as source_bits={source_bits} (values 0..{2**source_bits - 1}) have a "
            f"maximum of {top}, below {2 ** (source_bits - 3)}: they look like "
            f"{_bits_needed(top)}-bit data; pass source_bits={_bits_needed(top)} "
            "(or source_bits=None to infer it from the maximum)."
        )


def _check_images(images: np.ndarray) -> np.ndarray:
    if images is None:
        raise ValueError("images must be uint8 of shape [N, H, W, C] (or [N, H, W]); got None.")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(
            "images must be uint8 of shape [N, H, W, C] (or [N, H, W]); "
            f"got {images.dtype} of shape {list(images.shape)}."
        )
    if len(images) == 0:
        raise ValueError("images must hold at least one image; got 0.")
    if images.ndim == 3:
        images = images[..., None]
    return images


IMAGE_KEYS: tuple[str, ...] = ("image", "images", "x")
"""Keys read as the images of a dict batch or element, first match wins (TFDS uses ``"image"``)."""
LABEL_KEYS: tuple[str, ...] = ("label", "labels", "context")
"""Keys read as the labels (a conditional model's context) of a dict batch or element."""


def image_key(keys: Iterable[str], where: str = "images") -> str:
    """The key of ``keys`` that holds the images (see ``IMAGE_KEYS``).

    Raises:
        ValueError: If none of ``IMAGE_KEYS`` is among ``keys``.
    """
    keys = list(keys)
    for key in IMAGE_KEYS:
        if key in keys:
            return key
    raise ValueError(
        f"{where}: a dict needs its images under one of the keys {list(IMAGE_KEYS)} "
        f"(TFDS uses 'image'); got the keys {sorted(map(str, keys))}."
    )


def label_key(keys: Iterable[str]) -> str | None:
    """The key of ``keys`` that holds the labels (see ``LABEL_KEYS``), or ``None``."""
    keys = list(keys)
    return next((key for key in LABEL_KEYS if key in keys), None)


def _unbatched_elements(ds: tf.data.Dataset) -> tuple[tf.data.Dataset, bool]:
    """One image ``[H, W, C]`` (and its label) per element, and whether labels come."""
    spec = ds.element_spec
    if isinstance(spec, dict):
        key, lkey = image_key(spec, "make_dataset"), label_key(spec)
        ds = ds.map(lambda d: d[key] if lkey is None else (d[key], d[lkey]))
    elif isinstance(spec, tuple) and len(spec) == 1:
        ds = ds.map(lambda x: x)
    elif isinstance(spec, tuple) and len(spec) != 2:
        raise ValueError(
            f"make_dataset: a Dataset of tuples must yield (images, labels); got tuples of {len(spec)} items."
        )
    elif not isinstance(spec, (tuple, tf.TensorSpec)):
        raise ValueError(
            "make_dataset: a Dataset must yield images, (images, labels) or dicts with an "
            f"'image' key; got elements of {spec}."
        )
    spec = ds.element_spec
    has_labels = isinstance(spec, tuple)
    x_spec = spec[0] if has_labels else spec
    rank = x_spec.shape.rank
    if not x_spec.dtype.is_integer or rank not in (2, 3, 4):
        raise ValueError(
            "make_dataset: a Dataset's images must be integer pixels (uint8) shaped [H, W, C] "
            f"or [H, W] per image, or [B, H, W, C] per batch; got {x_spec.dtype.name} of shape "
            f"{x_spec.shape}. (Float images are already levels: batch them and pass them to "
            "fit directly.)"
        )
    if x_spec.dtype.size > 1:
        raise ValueError(
            "make_dataset reduces 8-bit pixels (source_bits <= 8); a Dataset of "
            f"{x_spec.dtype.name} images goes to fit directly, whose models read integer "
            "pixels themselves (see tfflows.data.integer_pixel_bits)."
            if x_spec.dtype == tf.uint16
            else f"make_dataset: a Dataset's pixels must be uint8; got {x_spec.dtype.name}. "
            "Cast them with tf.cast(images, tf.uint8) after checking they lie in 0..255."
        )
    if rank == 4:
        ds = ds.unbatch()
    elif rank == 2:
        ds = ds.map(lambda x, *y: (x[..., None], *y) if y else x[..., None])
    return ds, has_labels


def _elements_from_arrays(images, labels) -> tuple[tf.data.Dataset, int, int]:
    """Unbatched elements from arrays, their count, and the images' maximum."""
    if isinstance(images, dict):
        key, lkey = image_key(images, "make_dataset"), label_key(images)
        if labels is None and lkey is not None:
            labels = images[lkey]
        images = images[key]
    images = _check_images(images)
    elements: np.ndarray | tuple[np.ndarray, np.ndarray] = images
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 0 or len(labels) != len(images):
            raise ValueError(
                f"labels must have {len(images)} rows, one per image; got shape {list(labels.shape)}."
            )
        if labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
            shown = labels.ravel()[:4].tolist()
            raise ValueError(
                f"labels must be class ids (integers >= 0), got {labels.dtype} values such as {shown}."
            )
        elements = (images, labels)
    return tf.data.Dataset.from_tensor_slices(elements), len(images), int(images.max())


def make_dataset(
    images: np.ndarray | dict | tf.data.Dataset,
    labels: np.ndarray | None = None,
    batch_size: int = 64,
    num_bits: int | None = None,
    source_bits: int | None = 8,
    shuffle: bool = True,
    repeat: bool = False,
    dequantize: bool = True,
    seed: int | None = None,
    drop_remainder: bool = False,
    shuffle_buffer: int | None = None,
    n_bits: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``num_bits`` images as float32 in ``[0, 2^num_bits)``.

    Each pixel becomes ``floor(x / 2^(source_bits - num_bits))``, plus fresh
    ``U[0, 1)`` noise every epoch when ``dequantize``. Noise and shuffling are
    reproducible when ``seed`` is given.

    ``images`` may be:

    - a uint8 array ``[N, H, W, C]`` (or ``[N, H, W]``, given a channel axis);
    - a dict of arrays in TFDS's layout, ``{"image": ..., "label": ...}``
      (``tfds.as_numpy(tfds.load(..., batch_size=-1))``): the images under
      one of ``IMAGE_KEYS``, the labels, if any, under one of ``LABEL_KEYS``;
    - a ``tf.data.Dataset`` of uint8 images, ``(images, labels)`` tuples or
      such dicts (``tfds.load("mnist", split="train")``), one image per
      element (``[H, W, C]``, or ``[H, W]``, which gains a channel axis) or
      already batched (``[B, H, W, C]``, unbatched here and batched again to
      ``batch_size``). Its values are checked against ``source_bits`` as
      they stream: a pixel out of range stops the iteration with an
      ``InvalidArgumentError`` naming the range.

    Args:
        images: The images, as above, with values below ``2^source_bits``.
        labels: Optional array with ``N`` rows, yielded unchanged beside the
            images (arrays only; a dict or Dataset brings its own).
        batch_size: Images per batch.
        num_bits: Bit depth to model, ``1 <= num_bits <= source_bits``
            (default 8), the model's ``num_bits``.
        source_bits: Bit depth of ``images`` (see ``num_bits_of``): 8 for
            0..255 pixels, 5 for the digits' 0..16; ``None`` infers it as the
            fewest bits that hold the maximum of an array, and as 8 for a
            Dataset. For arrays, a maximum of ``2^source_bits`` or more, or
            one below ``2^(source_bits - 3)`` (data that looks like it was
            given in a smaller range), raises ``ValueError``.
        shuffle: Reshuffle every epoch: the whole set for arrays, a buffer of
            ``shuffle_buffer`` images for a Dataset.
        repeat: Repeat forever.
        dequantize: Add uniform noise; ``False`` yields the integers as floats.
        seed: Seed for shuffling and noise; ``None`` for fresh randomness.
        drop_remainder: Drop the last batch if it is smaller than ``batch_size``.
        shuffle_buffer: Images held for shuffling a Dataset; ``None`` for
            10,000 (or the Dataset's size when it is known and smaller).
        n_bits: The deprecated old name of ``num_bits``.

    Returns:
        A ``tf.data.Dataset`` of ``[B, H, W, C]`` float32 batches, or of
        ``(images, labels)`` tuples when there are labels.

    Raises:
        ValueError: If images are not uint8 of rank 3 or 4 (or a Dataset of
            such images), their maximum does not match ``source_bits`` (see
            above), labels do not match, or a size is out of range.
    """
    num_bits = renamed_argument("make_dataset", "num_bits", num_bits, "n_bits", n_bits, default=8)
    if source_bits is not None:
        check_bits(num_bits, source_bits, "num_bits")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if shuffle_buffer is not None and (
        isinstance(shuffle_buffer, bool)
        or not isinstance(shuffle_buffer, (int, np.integer))
        or shuffle_buffer < 1
    ):
        raise ValueError(f"shuffle_buffer must be a positive integer or None; got {shuffle_buffer!r}.")
    if isinstance(images, tf.data.Dataset):
        if labels is not None:
            raise ValueError(
                "make_dataset: a Dataset brings its own labels (a dict's 'label' or the second "
                "item of a tuple); got labels= as well."
            )
        ds, has_labels = _unbatched_elements(images)
        if source_bits is None:
            source_bits = 8
            check_bits(num_bits, source_bits, "num_bits")
        size = int(ds.cardinality())
        buffer = shuffle_buffer or (size if 0 < size < 10_000 else 10_000)
        ds = ds.map(_range_check(source_bits, has_labels))
    else:
        ds, size, top = _elements_from_arrays(images, labels)
        has_labels = isinstance(ds.element_spec, tuple)
        if source_bits is None:
            source_bits = _bits_needed(top)
            check_bits(num_bits, source_bits, "num_bits")
        else:
            _check_source_range(top, source_bits)
        buffer = shuffle_buffer or size
    if shuffle:
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    # One stateless key per batch from a stream that changes every epoch keeps
    # the noise fresh yet reproducible, even under parallel map.
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def transform(batch, key):
        x, y = batch if has_labels else (batch, None)
        seed_pair = tf.stack([key, tf.zeros_like(key)])
        x = quantize(x, num_bits, source_bits, seed_pair, noise=dequantize)
        return x if y is None else (x, y)

    ds = tf.data.Dataset.zip((ds, keys)).map(transform, num_parallel_calls=PARALLEL_CALLS)
    return steady(ds.prefetch(PREFETCH_BATCHES))


def _range_check(source_bits: int, has_labels: bool):
    """A map function that fails the iteration on a pixel outside [0, 2^source_bits)."""
    top = 2**source_bits

    def check(x, *label):
        if top < 256:  # uint8 holds exactly 0..255: nothing to check at 8 bits
            message = f"make_dataset: pixels must lie in [0, {top}) for source_bits={source_bits}"
            with tf.control_dependencies(
                [tf.debugging.assert_less(x, tf.constant(top, x.dtype), message=message)]
            ):
                x = tf.identity(x)
        return (x, *label) if has_labels else x

    return check


def toy_dataset(
    name: str,
    n: int,
    batch_size: int = 256,
    seed: int | None = None,
    repeat: bool = False,
    shuffle: bool = True,
) -> tf.data.Dataset:
    """Batches of ``n`` fixed points drawn once from a 2-D toy density.

    Args:
        name: One of ``TOY_NAMES``.
        n: Number of points in the set.
        batch_size: Points per batch.
        seed: Seed for the points and the shuffling.
        repeat: Repeat forever.
        shuffle: Reshuffle every epoch.

    Returns:
        A ``tf.data.Dataset`` of float32 ``[B, 2]`` batches.

    Raises:
        ValueError: If ``name`` is unknown or a size is out of range.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
    points = sample_toy(name, n, seed=seed)
    ds = tf.data.Dataset.from_tensor_slices(points)
    if shuffle and n > 0:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return steady(ds.batch(batch_size).prefetch(PREFETCH_BATCHES))
