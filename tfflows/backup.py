"""ResumableBackup: Keras' ``BackupAndRestore`` with atomic writes that survives a damaged backup."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings

import keras

from tfflows.callbacks import checkpoint_files
from tfflows.io import atomic_path, atomic_write_json

__all__ = ["ResumableBackup"]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """Keras ``BackupAndRestore`` whose writes are atomic and which survives a damaged backup.

    After every epoch it writes ``latest.weights.h5`` and
    ``training_metadata.json`` in ``backup_dir``, each under a temporary
    name renamed into place, so a killed run leaves complete files. When
    training begins it restores, in this order of preference:

    1. the backup, when both files are there, load, and the metadata's
       digest of the weights file matches it;
    2. otherwise (no backup, or one that is truncated, unreadable or only
       half there: a warning names the file) the newest checkpoint
       ``epoch_XXX.keras`` in ``checkpoint_dir`` that loads: its weights,
       and XXX as the initial epoch;
    3. otherwise nothing: training starts fresh, with the weights it had.

    Args:
      backup_dir: the folder for the backup; nothing else may write there.
      checkpoint_dir: where ``ModelCheckpoint`` writes ``epoch_XXX.keras``; ``None``: no fallback.
      save_freq: ``"epoch"`` or a number of batches, as in Keras.
      delete_checkpoint: remove the backup when ``fit`` ends, as in Keras.

    Attributes:
      initial_epoch: the epochs the model had already trained when ``fit`` began (0: fresh).
      restored_from: the backup folder or checkpoint file it restored, or ``None``.
    """

    def __init__(
        self,
        backup_dir: str,
        checkpoint_dir: str | None = None,
        save_freq: str | int = "epoch",
        delete_checkpoint: bool = True,
    ) -> None:
        super().__init__(
            backup_dir, save_freq=save_freq, double_checkpoint=False, delete_checkpoint=delete_checkpoint
        )
        self.checkpoint_dir = checkpoint_dir
        self.initial_epoch = 0
        self.restored_from: str | None = None

    # -- restoring ---------------------------------------------------------------------
    def on_train_begin(self, logs: dict | None = None) -> None:
        model = self.model
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        before = self._state()
        self.initial_epoch, self.restored_from = 0, None
        if self._backup_present():
            try:
                self._resume(self._read_backup(), self.backup_dir)
                return
            except _DamagedBackup as err:
                warnings.warn(
                    f"tfflows: the training backup {err.path!r} is damaged ({err.reason}); "
                    "falling back to the newest checkpoint that loads.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._set_state(before)
        for epoch, path in checkpoint_files(self.checkpoint_dir):
            try:
                model.load_weights(path)
            except Exception as err:  # a truncated zip, an HDF5 error, another architecture …
                warnings.warn(
                    f"tfflows: checkpoint {path!r} does not load ({_short(err)}); skipped.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._set_state(before)
                continue
            self._resume(epoch, path)
            return

    def _backup_present(self) -> bool:
        return os.path.exists(self._weights_path) or os.path.exists(self._training_metadata_path)

    def _read_backup(self) -> int:
        """Loads the backup's weights; returns its epoch, or raises ``_DamagedBackup``."""
        meta = self._training_metadata_path
        try:
            with open(meta, encoding="utf-8") as f:
                metadata = json.load(f)
            epoch = metadata["epoch"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise _DamagedBackup(meta, _short(err)) from err
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise _DamagedBackup(meta, f"expected a whole number of epochs >= 0, got {epoch!r}")
        digest = metadata.get("weights_sha256")  # absent in a backup written by Keras itself
        if digest is not None and os.path.exists(self._weights_path):
            if _sha256(self._weights_path) != digest:
                raise _DamagedBackup(
                    self._weights_path,
                    f"it is not the file {meta!r} describes (a run killed between writing the two)",
                )
        try:
            self.model.load_weights(self._weights_path)
        except Exception as err:
            raise _DamagedBackup(self._weights_path, _short(err)) from err
        return epoch

    def _resume(self, epoch: int, source: str) -> None:
        self.initial_epoch, self.restored_from = epoch, source
        self.model._initial_epoch = epoch  # what Keras' own BackupAndRestore sets for fit

    def _state(self) -> list:
        variables = list(self.model.weights)
        if self.model.optimizer is not None:
            variables += list(self.model.optimizer.variables)
        return [(v, keras.ops.convert_to_numpy(v)) for v in variables]

    @staticmethod
    def _set_state(state: list) -> None:
        # A load that failed half-way may have assigned some variables already.
        for variable, value in state:
            variable.assign(value)

    # -- writing -----------------------------------------------------------------------
    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        # FlowModel.save_weights is atomic itself; the outer rename covers any other model.
        with atomic_path(self._weights_path) as tmp:
            self.model.save_weights(tmp, overwrite=True)
        # The two files cannot be renamed in one step; the digest ties them together, so
        # a run killed between the two renames is seen as such and not resumed at the
        # wrong epoch.
        atomic_write_json(
            self._training_metadata_path,
            {
                "epoch": self._current_epoch,
                "batch": self._last_batch_seen,
                "weights_sha256": _sha256(self._weights_path),
            },
        )

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.delete_checkpoint and os.path.exists(self.backup_dir):
            # The metadata first: a removal killed half-way must not leave an epoch
            # count without the weights that go with it.
            if os.path.exists(self._training_metadata_path):
                os.remove(self._training_metadata_path)
            shutil.rmtree(self.backup_dir)


class _DamagedBackup(Exception):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason
