"""Per-example OOD scores of a flow on images, streamed batch by batch.

Every score is oriented the same way: higher means "more out-of-distribution".

- ``nll``: −log p(x) in nats, and ``bits_per_dim`` = −log p(x) / (D ln 2), D = H·W·C.
  Raw likelihood; known to fail on simpler inputs, which the model finds *more*
  likely than its own data (Nalisnick et al., 2019, "Do Deep Generative Models
  Know What They Don't Know?").
- ``complexity_corrected``: S(x) = bits_per_dim(x) − L(x) / D, L(x) the length in
  bits of x compressed losslessly (PNG, zlib level 9), so the score is the
  model's code length minus a generic compressor's (Serrà et al., 2020, "Input
  complexity and out-of-distribution detection with likelihood-based generative
  models", ICLR).
- ``likelihood_ratio``: log p_background(x) − log p(x), the background model a
  flow of the same inputs trained on perturbed images, which captures
  population-level statistics; the ratio cancels them (Ren et al., 2019,
  "Likelihood Ratios for Out-of-Distribution Detection", NeurIPS). Adding a
  constant to both log-likelihoods leaves it unchanged.
- ``typicality``: |−log p(x) − E_train[−log p]|, the typicality test with a
  batch of one; :class:`TypicalityTest` runs it on batches of M with a
  bootstrap threshold (Nalisnick et al., 2019, "Detecting Out-of-Distribution
  Inputs to Deep Generative Models Using Typicality", arXiv:1906.02994).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorflow as tf

from tfflows.data.arrays import as_float64_vector
from tfflows.ood.density import as_density
from tfflows.ood.registry import image_scores

__all__ = [
    "TypicalityTest",
    "check_mean_nll",
    "check_nll",
    "complexity_bits_per_dim",
    "complexity_corrected",
    "image_batches",
    "likelihood_ratio",
    "score",
    "typicality",
]

PNG_COMPRESSION = 9


def complexity_bits_per_dim(images: tf.Tensor, num_bits: int = 8) -> tf.Tensor:
    """L(x) / D: the PNG length of each image in bits per dimension (Serrà et al., 2020).

    Pixels are reduced to ``num_bits`` first, k = floor(x / 2^(b − n)) for
    b-bit input, so the compressor sees the same information the model
    scores. Plain TF ops (``tf.io.encode_png``, compression 9): usable inside
    a SavedModel. The length includes PNG's fixed overhead (about 70 bytes),
    the same for every image of one size, so rankings are unaffected.

    Args:
      images: uint8 ``[B, H, W, C]`` (b = 8) or uint16 (b = 16), C in 1..4.
      num_bits: the model's bits per pixel, 1..b.

    Returns:
      float32 ``[B]``.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype not in (tf.uint8, tf.uint16) or images.shape.rank != 4:
        raise ValueError(
            f"complexity_bits_per_dim: expected uint8 (or uint16) images [B, H, W, C], "
            f"got {images.dtype.name} of shape {images.shape}."
        )
    source_bits = 8 if images.dtype == tf.uint8 else 16
    if not 1 <= num_bits <= source_bits:
        raise ValueError(
            f"complexity_bits_per_dim: num_bits must be in 1..{source_bits} for "
            f"{images.dtype.name} images, got {num_bits!r}."
        )
    levels = images // tf.constant(2 ** (source_bits - num_bits), images.dtype)
    dims = tf.cast(tf.reduce_prod(tf.shape(images)[1:]), tf.float32)
    lengths = tf.map_fn(
        lambda im: tf.strings.length(tf.io.encode_png(im, compression=PNG_COMPRESSION)),
        levels,
        fn_output_signature=tf.int32,
    )
    return tf.cast(lengths, tf.float32) * 8.0 / dims


def complexity_corrected(
    bits_per_dim: tf.Tensor | np.ndarray, complexity: tf.Tensor | np.ndarray
) -> tf.Tensor | np.ndarray:
    """S(x) = bits_per_dim(x) − complexity(x), both in bits per dimension (Serrà et al., 2020)."""
    _check_pair("complexity_corrected", "bits_per_dim", bits_per_dim, "complexity", complexity)
    return bits_per_dim - complexity


def likelihood_ratio(
    log_prob: tf.Tensor | np.ndarray, background_log_prob: tf.Tensor | np.ndarray
) -> tf.Tensor | np.ndarray:
    """−LLR(x) = log p_background(x) − log p(x): higher is more OOD (Ren et al., 2019)."""
    _check_pair("likelihood_ratio", "log_prob", log_prob, "background_log_prob", background_log_prob)
    return background_log_prob - log_prob


def _check_pair(owner: str, a_name: str, a: Any, b_name: str, b: Any) -> None:
    """Eagerly: two per-example arrays of one shape without NaN (in a graph, nothing is checked)."""
    if any(tf.is_tensor(v) for v in (a, b)):
        return  # scores inside tfflows (score(), the SavedModel) check their own inputs
    arrays = [np.asarray(v, dtype=np.float64) for v in (a, b)]
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(
            f"{owner}: expected {a_name} and {b_name} of one shape (one value per example), got "
            f"{arrays[0].shape} and {arrays[1].shape}."
        )
    for name, arr in zip((a_name, b_name), arrays):
        if np.isnan(arr).any():
            raise ValueError(f"{owner}: expected {name} without NaN, got {int(np.isnan(arr).sum())} NaN.")


def check_nll(name: str, nll: Any) -> np.ndarray:
    """``nll`` as a float64 1-D array; NaN (a value the model could not score) is refused.

    +inf stays: an example of probability zero is as far out of distribution as can be.
    """
    a = as_float64_vector(nll, name, "NLLs")
    if a.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of NLLs, got shape {a.shape}.")
    nan = int(np.isnan(a).sum())
    if nan:
        raise ValueError(
            f"{name}: expected NLLs that are numbers, got {nan} NaN of {a.size} (the "
            f"model could not score those examples; first at index "
            f"{int(np.flatnonzero(np.isnan(a))[0])})."
        )
    return a


def check_mean_nll(name: str, value: Any) -> float:
    """``value`` as a finite float (a mean training NLL), else a ValueError naming ``name``."""
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{name}: expected a finite number of nats, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a finite number of nats, got {value!r}.") from None
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number of nats, got {number!r}.")
    return number


def typicality(nll: npt.ArrayLike, train_mean_nll: float) -> np.ndarray:
    """|nll(x) − mean training nll|: the typicality test's statistic for a batch of one.

    (Nalisnick et al., 2019.)
    """
    return np.abs(check_nll("nll", nll) - check_mean_nll("train_mean_nll", train_mean_nll))


def _check_array(images: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    if images.dtype.kind not in "iuf":
        raise ValueError(
            f"{what}: expected uint8 pixels 0..255, got an array of dtype {images.dtype} "
            f"and shape {list(images.shape)}."
        )
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape):
        channels = (
            f" (channel count {images.shape[-1]} against {shape[-1]})"
            if images.ndim == 4 and images.shape[1:3] == tuple(shape[:2])
            else ""
        )
        raise ValueError(
            f"{what}: expected images of shape [N, {', '.join(map(str, shape))}], "
            f"got {list(images.shape)}{channels}."
        )
    if images.dtype != np.uint8:
        if images.dtype.kind in "iu" and images.size and 0 <= images.min() and images.max() <= 255:
            return images.astype(np.uint8)
        low = float(images.min()) if images.size else 0.0
        high = float(images.max()) if images.size else 0.0
        raise ValueError(
            f"{what}: expected uint8 pixels 0..255, got {images.dtype.name} values from "
            f"{low:g} to {high:g} (rescale, e.g. digits' 0..16 times 255/16, and cast)."
        )
    return images


def image_batches(
    data: Any, shape: tuple, batch_size: int = 256, what: str = "images"
) -> Iterator[tf.Tensor]:
    """uint8 batches ``[b, *shape]`` from an array or a ``tf.data.Dataset``, streamed.

    A dataset may yield single images or batches; it is read one element at a
    time, so it may be larger than memory. An array is sliced, not copied.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}.")
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, tf.TensorSpec):
            raise ValueError(f"{what}: expected a dataset of images only, got elements {spec}.")
        if spec.dtype != tf.uint8:
            raise ValueError(f"{what}: expected a dataset of uint8 pixels 0..255, got {spec.dtype.name}.")
        if spec.shape.rank == 3:
            data = data.batch(batch_size)
        elif spec.shape.rank != 4:
            raise ValueError(
                f"{what}: expected dataset elements [H, W, C] or [B, H, W, C], got {spec.shape}."
            )
        for batch in data:
            yield tf.convert_to_tensor(_check_array(batch.numpy(), shape, what))
        return
    images = np.asarray(data)
    images = _check_array(images, shape, what)
    for start in range(0, len(images), batch_size):
        yield tf.convert_to_tensor(images[start : start + batch_size])


def score(
    model: Any,
    data: Any,
    background: Any | None = None,
    *,
    batch_size: int = 256,
    train_mean_nll: float | None = None,
) -> dict[str, np.ndarray]:
    """Every per-example score of this module for ``data``; higher is more OOD.

    Args:
      model: the in-distribution density: a FlowModel of images, an exported
        SavedModel folder or an :class:`ImageDensity`.
      data: uint8 images ``[N, H, W, C]`` (0..255) or a ``tf.data.Dataset`` of
        them (single images or batches), read batch by batch.
      background: a density of the same image shape trained on perturbed data
        (see :func:`tfflows.ood.train_background`); adds ``likelihood_ratio``.
      batch_size: images per batch for an array or an unbatched dataset.
      train_mean_nll: the mean training NLL (nats); adds ``typicality``.

    Returns:
      float64 arrays ``[N]``: ``nll``, ``bits_per_dim``, ``complexity_bits_per_dim``,
      every registered image score (:mod:`tfflows.ood.registry`; ``complexity_corrected``
      built in) and, where asked for, ``likelihood_ratio`` and ``typicality``.
    """
    density = as_density(model)
    bg = None if background is None else as_density(background)
    if train_mean_nll is not None:
        train_mean_nll = check_mean_nll("train_mean_nll", train_mean_nll)
    if bg is not None and bg.event_shape != density.event_shape:
        raise ValueError(
            f"background: expected a model of the same image shape "
            f"{list(density.event_shape)}, got {list(bg.event_shape)}."
        )
    dims_ln2 = density.num_dims * math.log(2.0)
    parts: dict[str, list[np.ndarray]] = {"nll": [], "complexity_bits_per_dim": []}
    if bg is not None:
        parts["background_nll"] = []
    registered = image_scores()
    for extra in registered:
        parts[extra.name] = []
    for batch in image_batches(data, density.event_shape, batch_size):
        nll = -density.log_prob(batch)
        parts["nll"].append(nll.numpy())
        parts["complexity_bits_per_dim"].append(complexity_bits_per_dim(batch, density.num_bits).numpy())
        bits = tf.cast(nll, tf.float32) / dims_ln2
        for extra in registered:
            parts[extra.name].append(np.asarray(extra.compute(batch, bits, density.num_bits)))
        if bg is not None:
            parts["background_nll"].append(-bg.log_prob(batch).numpy())
    out = {k: np.concatenate(v).astype(np.float64) if v else np.zeros(0) for k, v in parts.items()}
    out["bits_per_dim"] = out["nll"] / dims_ln2
    for key, values in out.items():
        nan = np.flatnonzero(np.isnan(values))
        if nan.size:
            raise ValueError(
                f"{density.name}: the {key} score is NaN for {nan.size} of {values.size} "
                f"images (first: image {int(nan[0])}): the model"
                f"{' or the background' if bg is not None else ''} could not score them."
            )
    if bg is not None:
        out["likelihood_ratio"] = likelihood_ratio(-out["nll"], -out.pop("background_nll"))
    if train_mean_nll is not None:
        out["typicality"] = typicality(out["nll"], train_mean_nll)
    return out


@dataclass
class TypicalityTest:
    """The typicality test for batches (Nalisnick et al., 2019, arXiv:1906.02994).

    A batch of M images is OOD when |mean NLL of the batch − ``train_mean``| > ``threshold``.
    :meth:`fit` sets ``train_mean`` from the training set's NLLs and the
    threshold ε as the (1 − fpr) quantile of that statistic over ``num_bootstrap``
    batches of M drawn with replacement from held-out in-distribution NLLs, so
    in-distribution batches are flagged at about the rate ``fpr``.
    """

    train_mean: float
    threshold: float
    batch_size: int
    fpr: float

    def __post_init__(self) -> None:
        self.train_mean = check_mean_nll("train_mean", self.train_mean)
        if isinstance(self.threshold, bool) or not (
            float(self.threshold) >= 0.0 and math.isfinite(float(self.threshold))
        ):
            raise ValueError(f"threshold: expected a finite number of nats >= 0, got {self.threshold!r}.")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, (int, np.integer))
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size: expected a positive integer, got {self.batch_size!r}.")
        if isinstance(self.fpr, bool) or not 0.0 < float(self.fpr) < 1.0:
            raise ValueError(f"fpr: expected a rate in (0, 1), got {self.fpr!r}.")

    @classmethod
    def fit(
        cls,
        train_nll: npt.ArrayLike,
        validation_nll: npt.ArrayLike | None = None,
        *,
        batch_size: int,
        fpr: float = 0.01,
        num_bootstrap: int = 1000,
        seed: int = 0,
    ) -> TypicalityTest:
        """Args: NLLs (nats) of training and held-out examples (the training ones twice when no
        held-out set is given), the batch size M, the false-positive rate, the number of
        bootstrap batches and a seed."""
        train = np.asarray(train_nll, dtype=np.float64)
        held = train if validation_nll is None else np.asarray(validation_nll, dtype=np.float64)
        for name, a in (("train_nll", train), ("validation_nll", held)):
            if a.ndim != 1 or a.size < 2 or not np.all(np.isfinite(a)):
                raise ValueError(
                    f"{name}: expected a 1-D array of at least 2 finite NLLs, got "
                    f"shape {a.shape} with {int(np.sum(~np.isfinite(a)))} non-finite."
                )
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}.")
        if isinstance(fpr, bool) or not 0.0 < fpr < 1.0:
            raise ValueError(f"fpr: expected a rate in (0, 1), got {fpr!r}.")
        if (
            isinstance(num_bootstrap, bool)
            or not isinstance(num_bootstrap, (int, np.integer))
            or num_bootstrap < 1
        ):
            raise ValueError(f"num_bootstrap: expected a positive integer, got {num_bootstrap!r}.")
        mean = float(train.mean())
        rng = np.random.default_rng(seed)
        draws = rng.choice(held, size=(num_bootstrap, int(batch_size)), replace=True)
        statistic = np.abs(draws.mean(axis=1) - mean)
        return cls(mean, float(np.quantile(statistic, 1.0 - fpr)), int(batch_size), float(fpr))

    def statistic(self, batch_nll: npt.ArrayLike) -> float:
        """|mean NLL of the batch − training mean NLL| (nats); NaN NLLs are refused."""
        batch = check_nll("batch_nll", batch_nll)
        if batch.size == 0:
            raise ValueError("batch_nll: expected at least one NLL, got none.")
        return float(abs(np.mean(batch) - self.train_mean))

    def is_ood(self, batch_nll: npt.ArrayLike) -> bool:
        """Whether the batch's statistic exceeds the bootstrap threshold.

        A batch holding a NaN NLL (an example the model could not score) is
        refused, never declared in-distribution; a +inf NLL counts as OOD.
        """
        batch = check_nll("batch_nll", batch_nll)
        if len(batch) != self.batch_size:
            raise ValueError(
                f"batch_nll: expected {self.batch_size} NLLs (the batch size the "
                f"threshold was fitted for), got shape {batch.shape}."
            )
        return self.statistic(batch) > self.threshold

    def flag_rate(self, nll: npt.ArrayLike, seed: int = 0) -> float:
        """Share of disjoint batches of M, cut from ``nll`` in a shuffled order, flagged as OOD."""
        nll = np.random.default_rng(seed).permutation(check_nll("nll", nll))
        n = len(nll) // self.batch_size
        if n == 0:
            raise ValueError(
                f"nll: expected at least one batch of the test's batch_size (evaluate's "
                f"typicality_batch) = {self.batch_size} values, got {len(nll)}."
            )
        return float(np.mean([self.is_ood(b) for b in nll[: n * self.batch_size].reshape(n, -1)]))
