"""Keras callbacks for flow training: sample grids each epoch."""

from __future__ import annotations

import os
import time
import warnings
from typing import Sequence

import keras
import numpy as np

from tfflows.images import save_grid, to_uint8
from tfflows.io import atomic_path

__all__ = ["SampleGrid", "TimeLimit", "save_samples_picture", "density_picture"]


def density_picture(points: np.ndarray, path: str, bins: int = 200, extent: float = 4.5) -> None:
    """Saves a 2-D histogram of ``points`` as a grayscale PNG (dark = dense), atomically."""
    from PIL import Image

    hist, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=bins,
                                range=[[-extent, extent], [-extent, extent]])
    hist = np.flipud(hist)
    scaled = 255 - (255 * hist / max(hist.max(), 1)).astype(np.uint8)
    picture = Image.fromarray(scaled).resize((2 * bins, 2 * bins), Image.NEAREST)
    with atomic_path(path) as tmp:
        picture.save(tmp)  # the temporary name keeps the suffix, which picks the format


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
