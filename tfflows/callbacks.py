"""Keras callbacks for flow training: sample grids each epoch."""

from __future__ import annotations

import os
import time
import warnings
from typing import Sequence

import keras
import numpy as np

from tfflows.guard import NonFiniteWeightsError
from tfflows.images import save_grid, to_uint8

__all__ = ["FiniteCheckpoint", "SampleCheck", "SampleGrid", "TimeLimit", "save_samples_picture", "density_picture"]


def density_picture(points: np.ndarray, path: str, bins: int = 200, extent: float = 4.5) -> None:
    """Saves a 2-D histogram of ``points`` as a grayscale PNG (dark = dense)."""
    from PIL import Image

    hist, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=bins,
                                range=[[-extent, extent], [-extent, extent]])
    hist = np.flipud(hist)
    scaled = 255 - (255 * hist / max(hist.max(), 1)).astype(np.uint8)
    Image.fromarray(scaled).resize((2 * bins, 2 * bins), Image.NEAREST).save(path)


def save_samples_picture(model, path: str, temperatures: Sequence[float], per_row: int = 10,
                         seed: int = 0, num_bits: int = 8) -> None:
    """Draws ``per_row`` samples at each temperature and saves them as one PNG.

    Image models: one row per temperature (conditional models: one sample per
    class in each row). Vector models with 2 features: a density picture of
    many samples at the first temperature.
    """
    if len(model.event_shape) == 1:
        points = model.sample(20000, temperature=temperatures[0], seed=seed).numpy()
        density_picture(points, path)
        return
    rows = []
    for t in temperatures:
        context = None
        n = per_row
        if model.num_classes is not None:
            n = model.num_classes
            context = np.arange(n, dtype=np.int32)
        with warnings.catch_warnings():  # the warning below says what happens to them
            warnings.filterwarnings("ignore", r".*have inf or NaN values", RuntimeWarning)
            x = model.sample(n, temperature=float(t), seed=seed, context=context).numpy()
        bad = ~np.isfinite(x)
        if bad.any():
            # An early or unstable model can map hot latents outside the data's
            # range; show those pixels black rather than stop training.
            warnings.warn(f"tfflows: {int(bad.sum())} non-finite pixel values in samples at "
                          f"temperature {t}; drawn as 0.", RuntimeWarning, stacklevel=2)
            x = np.where(bad, 0.0, x)
        rows.append(to_uint8(x, num_bits))
    save_grid(path, rows, scale=max(1, 64 // model.event_shape[0]))


class SampleGrid(keras.callbacks.Callback):
    """Saves a PNG of samples at several temperatures after every epoch.

    Args:
      folder: where ``samples_epoch_XXX.png`` files go.
      temperatures: one row of samples per temperature.
      per_row: samples per row (one per class for class-conditional models).
      num_bits: bits per pixel of the model's data.
    """

    def __init__(self, folder: str, temperatures: Sequence[float] = (0.5, 0.7, 0.85, 1.0),
                 per_row: int = 10, num_bits: int = 8) -> None:
        super().__init__()
        self.folder = folder
        self.temperatures = list(temperatures)
        self.per_row = per_row
        self.num_bits = num_bits
        os.makedirs(folder, exist_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        path = os.path.join(self.folder, f"samples_epoch_{epoch + 1:03d}.png")
        save_samples_picture(self.model, path, self.temperatures, self.per_row,
                             num_bits=self.num_bits)


def _file_stamp(path: str):
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
    """

    def __init__(self, filepath: str, **kwargs) -> None:
        super().__init__(filepath, **kwargs)
        self.last_good: str | None = None

    def _save_model(self, epoch, batch, logs):
        if getattr(self.model, "stopped_on_nonfinite", False):
            return
        filepath = self._get_file_path(epoch, batch, logs)
        before = _file_stamp(filepath)
        try:
            super()._save_model(epoch, batch, logs)
        except NonFiniteWeightsError as err:
            warnings.warn(f"tfflows: no checkpoint at epoch {epoch + 1}: {err}", RuntimeWarning,
                          stacklevel=2)
            return
        if _file_stamp(filepath) not in (None, before):
            self.last_good = filepath


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
        self.temperature = float(temperature)
        self.seed = int(seed)

    def fraction(self) -> float:
        """The fraction of this check's samples with an inf or NaN value."""
        context = None
        if self.model.num_classes is not None:
            context = np.arange(self.num_samples, dtype=np.int32) % self.model.num_classes
        with warnings.catch_warnings():  # the fraction in the logs says it
            warnings.filterwarnings("ignore", r".*have inf or NaN values", RuntimeWarning)
            x = self.model.sample(self.num_samples, temperature=self.temperature, seed=self.seed,
                                  context=context)
        x = np.asarray(x).reshape(self.num_samples, -1)
        return float(np.mean(~np.isfinite(x).all(axis=1)))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and not self.model.context_dim:
            logs[self.key] = self.fraction()


class TimeLimit(keras.callbacks.Callback):
    """Stops training at the end of the first batch after ``seconds`` of training.

    The epoch in progress is cut short; evaluation and checkpoints that follow
    ``fit`` still run.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__()
        if not seconds > 0:
            raise ValueError(f"TimeLimit: seconds must be > 0, got {seconds!r}.")
        self.seconds = float(seconds)
        self.start = None

    def on_train_begin(self, logs=None):
        self.start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        if time.time() - self.start > self.seconds:
            self.model.stop_training = True
