"""Keras callbacks for flow training: sample grids each epoch, a time limit, a safe backup."""

from __future__ import annotations

import os
import re
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from tfflows.checks import check_picture_args, finite_number, positive_int, whole_number
from tfflows.guard import NonFiniteWeightsError
from tfflows.images import grid_picture, save_picture, to_uint8
from tfflows.io import numbered_entries

if TYPE_CHECKING:
    from tfflows.models.base import FlowModel

__all__ = [
    "FiniteCheckpoint",
    "SampleCheck",
    "SampleGrid",
    "TensorBoardSamples",
    "TimeLimit",
    "checkpoint_files",
    "density_array",
    "density_picture",
    "epoch_title",
    "samples_picture",
    "save_samples_picture",
    "temperature_label",
]

CHECKPOINT_NAME = re.compile(r"^epoch_(\d+)\.keras$")
"""``epoch_XXX.keras``: the model after XXX epochs (``ModelCheckpoint``'s names in ``tfflows train``)."""


def density_array(
    points: np.ndarray,
    bins: int = 200,
    extent: float = 4.5,
    dims: Sequence[int] = (0, 1),
    standardize: bool = True,
) -> np.ndarray:
    """A 2-D histogram of ``points`` [N, D] as a uint8 [2·bins, 2·bins] picture (dark = dense).

    It shows the features ``dims`` (the first two by default), each
    standardized by the points' own mean and standard deviation when
    ``standardize`` (so data in any units fill the square [−extent, extent]²);
    one feature (D = 1) is drawn as a bar histogram, the bars' heights
    proportional to the counts.

    Raises:
      ValueError: points not [N, D], or ``dims`` not two distinct features of D.
    """
    positive_int("density_array", "bins", bins)
    finite_number("density_array", "extent", extent, 0.0, strict=True)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 1:
        raise ValueError(f"density_array: expected points [N, D], got shape {list(points.shape)}.")
    if points.shape[1] > 1:
        dims = tuple(dims)
        if len(dims) != 2 or len(set(dims)) != 2 or not all(0 <= d < points.shape[1] for d in dims):
            raise ValueError(
                f"density_array: dims must be two distinct features in 0..{points.shape[1] - 1}, "
                f"got {dims!r}."
            )
        points = points[:, list(dims)]
    points = points[np.all(np.isfinite(points), axis=1)]
    if standardize and len(points) > 1:
        scale = points.std(axis=0)
        points = (points - points.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    if points.shape[1] == 1:
        hist, _ = np.histogram(points[:, 0], bins=bins, range=(-extent, extent))
        bars = np.round(bins * hist / max(hist.max(), 1)).astype(int)
        rows = np.arange(bins)[:, None]
        scaled = np.where(rows >= bins - bars[None, :], 0, 255).astype(np.uint8)
        return np.repeat(np.repeat(scaled, 2, axis=0), 2, axis=1)
    hist, _, _ = np.histogram2d(
        points[:, 1], points[:, 0], bins=bins, range=[[-extent, extent], [-extent, extent]]
    )
    hist = np.flipud(hist)
    scaled = 255 - (255 * hist / max(hist.max(), 1)).astype(np.uint8)
    return np.repeat(np.repeat(scaled, 2, axis=0), 2, axis=1)


def density_picture(
    points: np.ndarray,
    path: str,
    bins: int = 200,
    extent: float = 4.5,
    dims: Sequence[int] = (0, 1),
    standardize: bool = True,
) -> None:
    """Saves :func:`density_array` of ``points`` as a grayscale PNG (dark = dense), atomically."""
    save_picture(path, density_array(points, bins, extent, dims, standardize))


def temperature_label(temperature: float) -> str:
    """The row label of a sample grid: ``"T=0.70"``."""
    return f"T={finite_number('temperature_label', 'temperature', temperature):.2f}"


def samples_picture(
    model: FlowModel,
    temperatures: Sequence[float],
    per_row: int = 10,
    seed: int = 0,
    num_bits: int = 8,
    value_range: Sequence[float] | None = None,
    labels: bool = True,
    sample_options: dict | None = None,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    dims: Sequence[int] = (0, 1),
) -> np.ndarray:
    """Samples of ``model`` as one uint8 picture [H, W, C].

    Image models: one row per temperature, labelled ``T=0.70`` on the left
    when ``labels``; a class-conditional model draws one sample per class in
    each row, its columns named by ``class_names`` (default: the class
    numbers). ``title`` (e.g. the epoch and bits/dim) goes across the top.
    Pixel levels in ``value_range`` (default: all of ``num_bits``) span black
    to white. Vector models: a density picture of many samples at the first
    temperature, of the standardized features ``dims`` (a histogram for one
    feature; see :func:`density_array`). ``sample_options`` go to every
    ``model.sample`` call (TarFlow: ``guidance``, ``denoise``).
    """
    temperatures = check_picture_args("samples_picture", temperatures, per_row, num_bits, value_range)
    options = dict(sample_options or {})
    if len(model.event_shape) == 1:
        points = model.sample(20000, temperature=temperatures[0], seed=seed, **options).numpy()
        return density_array(points, dims=dims)[..., None]
    rows = []
    for t in temperatures:
        context = None
        n = per_row
        if model.num_classes is not None:
            n = model.num_classes
            context = np.arange(n, dtype=np.int32)
        with warnings.catch_warnings():  # the warning below says what happens to them
            warnings.filterwarnings("ignore", r".*have inf or NaN values", RuntimeWarning)
            x = model.sample(n, temperature=float(t), seed=seed, context=context, **options).numpy()
        bad = ~np.isfinite(x)
        if bad.any():
            # An early or unstable model can map hot latents outside the data's
            # range; show those pixels black rather than stop training.
            warnings.warn(
                f"tfflows: {int(bad.sum())} non-finite pixel values in samples at "
                f"temperature {t}; drawn as 0.",
                RuntimeWarning,
                stacklevel=2,
            )
            x = np.where(bad, 0.0, x)
        rows.append(to_uint8(x, num_bits, value_range))
    columns = None
    if model.num_classes is not None and labels:
        columns = list(class_names) if class_names is not None else [str(k) for k in range(model.num_classes)]
    return grid_picture(
        rows,
        scale=max(1, 64 // model.event_shape[0]),
        labels=[temperature_label(t) for t in temperatures] if labels else None,
        title=title if labels else None,
        column_labels=columns,
    )


def save_samples_picture(
    model: FlowModel,
    path: str,
    temperatures: Sequence[float],
    per_row: int = 10,
    seed: int = 0,
    num_bits: int = 8,
    value_range: Sequence[float] | None = None,
    labels: bool = True,
    sample_options: dict | None = None,
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    dims: Sequence[int] = (0, 1),
) -> None:
    """Draws ``per_row`` samples at each temperature and saves them as one PNG, atomically.

    See :func:`samples_picture` for the layout, the labels and title,
    ``value_range``, ``sample_options``, ``class_names`` and ``dims``.
    """
    picture = samples_picture(
        model,
        temperatures,
        per_row,
        seed,
        num_bits,
        value_range,
        labels,
        sample_options,
        title,
        class_names,
        dims,
    )
    save_picture(path, picture)


def epoch_title(epoch: int, logs: dict | None) -> str:
    """A grid's title: ``"epoch 3 · 2.85 bits/dim (validation)"``, from the epoch's logs.

    The validation figure when ``fit`` has one, else the training one; bits/dim
    for pixel models, nats/dim for vector data; the epoch alone without either.
    """
    logs = logs or {}
    for key, split in (("val_bits_per_dim", "validation"), ("bits_per_dim", "training")):
        if key in logs:
            return f"epoch {epoch + 1} · {float(logs[key]):.3f} bits/dim ({split})"
    for key, split in (("val_nats_per_dim", "validation"), ("nats_per_dim", "training")):
        if key in logs:
            return f"epoch {epoch + 1} · {float(logs[key]):.3f} nats/dim ({split})"
    return f"epoch {epoch + 1}"


class SampleGrid(keras.callbacks.Callback):
    """Saves a PNG of samples at several temperatures after every epoch.

    Args:
      folder: where ``samples_epoch_XXX.png`` files go.
      temperatures: one row of samples per temperature, labelled with it.
      per_row: samples per row (one per class for class-conditional models).
      num_bits: bits per pixel of the model's data.
      value_range: the lowest and highest pixel level of the training data,
        drawn black and white (default: 0 and 2^num_bits − 1).
      seed: the seed of the draw, the same every epoch.
      class_names: names of a class-conditional model's classes, over its
        columns (default: the class numbers; see :func:`tfflows.data.class_names`).
      dims: the two features a vector model's density picture shows.

    Each grid's title says the epoch and its bits/dim (:func:`epoch_title`).

    Attributes:
      picture: the last grid drawn (uint8 [H, W, C]), for
        :class:`TensorBoardSamples` to reuse; ``picture_epoch``: its epoch.
    """

    def __init__(
        self,
        folder: str,
        temperatures: Sequence[float] = (0.5, 0.7, 0.85, 1.0),
        per_row: int = 10,
        num_bits: int = 8,
        value_range: Sequence[float] | None = None,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
        dims: Sequence[int] = (0, 1),
    ) -> None:
        super().__init__()
        self.folder = folder
        self.class_names = None if class_names is None else list(class_names)
        self.dims = tuple(dims)
        self.temperatures = check_picture_args(
            "SampleGrid", temperatures, per_row, num_bits, value_range, folder
        )
        self.per_row = per_row
        self.num_bits = num_bits
        self.value_range = value_range
        self.seed = seed
        self.picture: np.ndarray | None = None
        self.picture_epoch: int | None = None
        os.makedirs(folder, exist_ok=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        path = os.path.join(self.folder, f"samples_epoch_{epoch + 1:03d}.png")
        picture = samples_picture(
            self.model,
            self.temperatures,
            self.per_row,
            self.seed,
            self.num_bits,
            self.value_range,
            title=epoch_title(epoch, logs),
            class_names=self.class_names,
            dims=self.dims,
        )
        self.picture, self.picture_epoch = picture, epoch
        save_picture(path, picture)


class TensorBoardSamples(keras.callbacks.Callback):
    """Writes a labelled sample grid to TensorBoard after every epoch (``tf.summary.image``).

    The image ``samples`` (step: the epoch, counted from 0 as Keras'
    ``TensorBoard`` counts it) has one row per temperature, labelled
    ``T=0.70``, as :class:`SampleGrid`'s PNG; vector models get the density
    picture. It goes to ``log_dir/samples``, beside the ``train`` and
    ``validation`` runs of ``keras.callbacks.TensorBoard(log_dir)``.

    Args:
      log_dir: the TensorBoard folder.
      temperatures, per_row, num_bits, value_range: as for :class:`SampleGrid`.
      seed: the seed of the draw, the same every epoch (the grid shows the
        model changing, not the noise).
      source: a :class:`SampleGrid` earlier in the callback list whose
        picture of the same epoch is logged instead of drawing the samples
        again (its temperatures, rows and seed then apply).
    """

    def __init__(
        self,
        log_dir: str,
        temperatures: Sequence[float] = (0.5, 0.7, 0.85, 1.0),
        per_row: int = 10,
        num_bits: int = 8,
        value_range: Sequence[float] | None = None,
        seed: int = 0,
        source: SampleGrid | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.log_dir = os.path.join(log_dir, "samples")
        self.temperatures = check_picture_args(
            "TensorBoardSamples", temperatures, per_row, num_bits, value_range, log_dir
        )
        self.per_row = per_row
        self.num_bits = num_bits
        self.value_range = value_range
        self.seed = seed
        self._writer: Any = None  # a tf.summary.SummaryWriter while training

    def on_train_begin(self, logs: dict | None = None) -> None:
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import tensorflow as tf

        source = self.source
        temperatures = self.temperatures
        if source is not None and source.picture is not None and source.picture_epoch == epoch:
            picture, temperatures = source.picture, source.temperatures
        else:
            picture = samples_picture(
                self.model, self.temperatures, self.per_row, self.seed, self.num_bits, self.value_range
            )
        with self._writer.as_default():
            tf.summary.image(
                "samples",
                picture[None],
                step=epoch,
                description="rows: temperatures " + ", ".join(temperature_label(t) for t in temperatures),
            )
        self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _file_stamp(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


class FiniteCheckpoint(keras.callbacks.ModelCheckpoint):
    """``keras.callbacks.ModelCheckpoint`` that writes only models fit to go back to.

    The epoch in which ``fit`` stopped on a non-finite value (see
    ``FlowModel.stopped_on_nonfinite``) is not checkpointed: it ended early,
    on the edge of divergence. A model with an inf or NaN weight is refused
    with a warning instead of ending training with
    :class:`~tfflows.guard.NonFiniteWeightsError`. ``last_good`` is the path
    of the last file written, or None.

    With ``keep`` (a number >= 1), after each file written only the newest
    ``keep`` checkpoints ``epoch_XXX.keras`` in its folder are kept, and the
    best: the one written in this run with the lowest finite ``monitor``
    (``val_loss`` by default) in its epoch's logs, kept in ``best``.
    """

    def __init__(self, filepath: str, keep: int | None = None, **kwargs: Any) -> None:
        super().__init__(filepath, **kwargs)
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise ValueError(f"FiniteCheckpoint: keep must be a whole number >= 1 or None, got {keep!r}.")
        self.keep = keep
        self.last_good: str | None = None
        self.best: str | None = None
        self._best_score = float("inf")

    def _save_model(self, epoch, batch, logs):
        if getattr(self.model, "stopped_on_nonfinite", False):
            return
        filepath = self._get_file_path(epoch, batch, logs)
        before = _file_stamp(filepath)
        try:
            super()._save_model(epoch, batch, logs)
        except NonFiniteWeightsError as err:
            warnings.warn(f"tfflows: no checkpoint at epoch {epoch + 1}: {err}", RuntimeWarning, stacklevel=2)
            return
        if _file_stamp(filepath) not in (None, before):
            self.last_good = filepath
            score = (logs or {}).get(self.monitor)
            if score is not None and np.isfinite(float(score)) and float(score) < self._best_score:
                self.best, self._best_score = filepath, float(score)
            if self.keep is not None:
                self._remove_old(os.path.dirname(filepath))

    def _remove_old(self, folder: str) -> None:
        """Removes the checkpoints past the newest ``keep``, the best excepted."""
        for _, path in checkpoint_files(folder)[self.keep :]:
            if self.best is None or os.path.abspath(path) != os.path.abspath(self.best):
                os.remove(path)


class SampleCheck(keras.callbacks.Callback):
    """Adds ``nonfinite_sample_fraction`` to the epoch logs (and so to the history).

    After every epoch it draws ``num_samples`` samples at ``temperature``
    with a fixed ``seed`` and logs the fraction with any inf or NaN value. A
    learning rate can keep the loss finite and still leave a model whose
    inverse overflows on most draws; this makes that visible. Models that
    take context vectors (``context_dim``) are not checked; class-conditional
    ones cycle through the classes.

    Args:
      num_samples: samples per check.
      temperature: the temperature of the check (1.0: the model itself).
      seed: the seed of the stateless draw, the same every epoch.
    """

    key = "nonfinite_sample_fraction"

    def __init__(self, num_samples: int = 64, temperature: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"SampleCheck: num_samples must be a positive integer, got {num_samples!r}.")
        self.num_samples = num_samples
        self.temperature = finite_number("SampleCheck", "temperature", temperature, 0.0)
        self.seed = whole_number("SampleCheck", "seed", seed)

    def fraction(self) -> float:
        """The fraction of this check's samples with an inf or NaN value."""
        context = None
        if self.model.num_classes is not None:
            context = np.arange(self.num_samples, dtype=np.int32) % self.model.num_classes
        with warnings.catch_warnings():  # the fraction in the logs says it
            warnings.filterwarnings("ignore", r".*have inf or NaN values", RuntimeWarning)
            x = self.model.sample(
                self.num_samples, temperature=self.temperature, seed=self.seed, context=context
            )
        x = np.asarray(x).reshape(self.num_samples, -1)
        return float(np.mean(~np.isfinite(x).all(axis=1)))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and not self.model.context_dim:
            logs[self.key] = self.fraction()


class TimeLimit(keras.callbacks.Callback):
    """Stops training at the end of the first batch after ``seconds`` of training.

    The epoch in progress is cut short; evaluation and checkpoints that follow
    ``fit`` still run. Seconds added to ``paused`` (a test run in the middle
    of training, see :class:`tfflows.clock.TestAt`) do not count.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = finite_number("TimeLimit", "seconds", seconds, 0.0, strict=True)
        self.start = 0.0  # set when training begins
        self.paused = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.start = time.time()
        self.paused = 0.0

    def remaining(self) -> float:
        """Seconds of training left before the limit stops it (0 once it has passed)."""
        return max(self.seconds - (time.time() - self.start - self.paused), 0.0)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if time.time() - self.start - self.paused > self.seconds:
            self.model.stop_training = True


def checkpoint_files(folder: str | None) -> list[tuple[int, str]]:
    """``(epochs, path)`` of every ``epoch_XXX.keras`` in ``folder``, newest first.

    Leftovers of unfinished atomic writes (hidden ``.*.tmp-*`` names) are skipped.
    """
    return numbered_entries(folder, CHECKPOINT_NAME)
