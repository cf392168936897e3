"""Every write is atomic: killed or failing at any point, a folder holds the old file or the new one.

The kill tests start a child Python that saves over an existing model or
SavedModel with one function patched to stop at a chosen point of the save
(it signals the parent, then sleeps); the parent sends SIGKILL there and
checks what the folder holds. Nothing depends on timing: the parent waits
(bounded) for the child's signal, not for a duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tfflows
from tfflows.callbacks import density_picture
from tfflows.export import CARD_FILE, export_saved_model, is_saved_model_folder
from tfflows.images import save_grid
from tfflows.io import is_temporary

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, time
what, where, target, ready = sys.argv[1:5]

def stop(*args, **kwargs):
    open(ready, "w").close()
    time.sleep(3600)  # the parent kills us here

import keras, shutil
import tfflows, tfflows.io
from keras.src.saving import saving_lib

model = keras.models.load_model(target if what == "keras" else sys.argv[5])
if what == "keras":
    for weight in model.trainable_weights:
        weight.assign(weight + 1.0)
    if where == "mid_write":      # the zip holds its metadata and config, no weights yet
        saving_lib._save_state = stop
    else:                          # renamed into place, the folder not yet synced
        tfflows.io._fsync_folder = stop
    model.save(target)
else:
    if where == "mid_write":      # the SavedModel written in the temporary folder, no card yet
        import tensorflow as tf
        real = tf.saved_model.save
        def save_then_stop(*args, **kwargs):
            real(*args, **kwargs)
            stop()
        tf.saved_model.save = save_then_stop
    else:                          # swapped into place, the old version not yet removed
        tfflows.io.shutil.rmtree = stop
    tfflows.export_saved_model(model, target, max_samples=9, overwrite=True)
raise SystemExit("the save finished without reaching the stop")
"""


def _kill_child_at_stop(tmp_path: Path, *args: str) -> None:
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = open(tmp_path / "child.log", "w")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args[:2], args[2], str(ready), *args[3:]],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 600  # a bound on a loaded machine, not a measurement
        while not ready.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail(f"the child never reached its stop:\n{(tmp_path / 'child.log').read_text()}")
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        log.close()


def _small_model() -> tfflows.VectorRealNVP:
    keras.utils.set_random_seed(0)
    model = tfflows.VectorRealNVP(2, num_steps=2, width=4)
    model.compile(optimizer="adam")
    return model


def _weights(model) -> list[np.ndarray]:
    # In order: a reloaded model's layers get fresh unique names, so paths differ.
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


@pytest.mark.slow
@pytest.mark.parametrize("where, survivor", [("mid_write", "old"), ("after_rename", "new")])
def test_killed_model_save_leaves_the_old_or_the_new_file(tmp_path, where, survivor):
    target = tmp_path / "models" / "model.keras"
    target.parent.mkdir()
    model = _small_model()
    model.save(str(target))
    old = _weights(model)
    new = [value + (1.0 if w.trainable else 0.0) for w, value in zip(model.weights, old)]

    _kill_child_at_stop(tmp_path, "keras", where, str(target))

    loaded = _weights(keras.models.load_model(target))
    want = old if survivor == "old" else new
    assert len(loaded) == len(want)
    for i, (got, value) in enumerate(zip(loaded, want)):
        np.testing.assert_array_equal(got, value, err_msg=f"weight {i}: not the {survivor} version")
    others = [n for n in os.listdir(target.parent) if n != "model.keras"]
    assert all(is_temporary(n) for n in others), others
    if where == "mid_write":  # the next save removes the killed one's leftover, and nothing else
        (target.parent / ".notes.tmp-mine").write_text("mine")  # a user's file with a look-alike name
        litter = [n for n in os.listdir(target.parent) if n.startswith(".model.tmp-")]
        assert len(litter) == 1, os.listdir(target.parent)
        model.save(str(target))
        assert sorted(os.listdir(target.parent)) == [".notes.tmp-mine", "model.keras"]


@pytest.mark.slow
@pytest.mark.parametrize("where, survivor", [("mid_write", 7), ("after_swap", 9)])
def test_killed_export_leaves_the_old_or_the_new_version(tmp_path, where, survivor):
    model = _small_model()
    model.save(str(tmp_path / "model.keras"))
    version = tmp_path / "serving" / "flow" / "1"
    export_saved_model(model, version, max_samples=7)

    _kill_child_at_stop(tmp_path, "export", where, str(version), str(tmp_path / "model.keras"))

    assert is_saved_model_folder(str(version))
    card = json.loads((version / CARD_FILE).read_text())
    assert card["max_samples"] == survivor
    x = np.array([[0.3, -1.2]], np.float32)
    served = tf.saved_model.load(str(version)).signatures["log_prob"](x=tf.constant(x))
    np.testing.assert_allclose(served["log_prob"], model.log_prob(x), rtol=1e-5)
    # TF Serving loads numeric version folders only: a leftover is hidden and not one of them.
    assert [n for n in os.listdir(version.parent) if not n.startswith(".")] == ["1"]
    if where == "mid_write":  # the killed export left its temporary folder; the next export removes it
        litter = [n for n in os.listdir(version.parent) if n != "1"]
        assert len(litter) == 1 and litter[0].startswith(".1.tmp-"), litter
        assert os.path.isdir(version.parent / litter[0])

        from tfflows.cli import main

        assert main(["export", str(tmp_path / "model.keras"), str(version.parent), "--overwrite"]) == 0
        assert os.listdir(version.parent) == ["1"]


def test_failed_export_overwrite_leaves_the_old_version(tmp_path, monkeypatch):
    model = _small_model()
    version = tmp_path / "flow" / "1"
    export_saved_model(model, version, max_samples=7)
    before = {p.relative_to(version): p.read_bytes() for p in version.rglob("*") if p.is_file()}

    real = tf.saved_model.save

    def save_then_fail(obj, path, **kwargs):
        real(obj, path, **kwargs)
        raise RuntimeError("disk full (injected)")

    monkeypatch.setattr(tf.saved_model, "save", save_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        export_saved_model(model, version, max_samples=9, overwrite=True)
    after = {p.relative_to(version): p.read_bytes() for p in version.rglob("*") if p.is_file()}
    assert after == before
    assert os.listdir(version.parent) == ["1"], "the temporary folder is removed"

    monkeypatch.setattr(tf.saved_model, "save", real)
    export_saved_model(model, version, max_samples=9, overwrite=True)
    assert json.loads((version / CARD_FILE).read_text())["max_samples"] == 9
    assert os.listdir(version.parent) == ["1"]


@pytest.mark.parametrize("present", [["saved_model.pb"], [CARD_FILE], ["saved_model.pb", "notes.txt"]])
def test_export_overwrite_refuses_a_folder_tfflows_did_not_write(tmp_path, present):
    folder = tmp_path / "1"
    for name in present:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("someone else's")
    with pytest.raises(ValueError, match="holds no SavedModel written by tfflows"):
        export_saved_model(_small_model(), folder, overwrite=True)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == sorted(present)


def _grid(path: str, value: int) -> None:
    save_grid(path, [np.full((2, 4, 4, 1), value, np.uint8)])


def _density(path: str, value: int) -> None:
    density_picture(np.full((10, 2), value / 100.0), path)


@pytest.mark.parametrize("write", [_grid, _density], ids=["save_grid", "density_picture"])
def test_failed_png_write_keeps_the_old_picture(tmp_path, monkeypatch, write):
    path = tmp_path / "samples.png"
    write(str(path), 10)
    old = path.read_bytes()
    Image.open(path).verify()

    def write_half_then_fail(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(old[: len(old) // 2])
        raise OSError("no space left on device (injected)")

    monkeypatch.setattr(Image.Image, "save", write_half_then_fail)
    with pytest.raises(OSError, match="injected"):
        write(str(path), 200)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["samples.png"], "the temporary file is removed"
    monkeypatch.undo()
    write(str(path), 200)
    assert path.read_bytes() != old and os.listdir(tmp_path) == ["samples.png"]


@pytest.mark.parametrize("swap", [True, False], ids=["renameat2", "two_renames"])
def test_atomic_dir_replaces_only_after_the_new_folder_is_complete(tmp_path, monkeypatch, swap):
    from tfflows import io

    if not swap:  # what happens where the system has no renameat2
        monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="injected"):
        with io.atomic_dir(tmp_path / "v", overwrite=True) as tmp:
            Path(tmp, "new.txt").write_text("new")
            raise RuntimeError("injected")
    assert os.listdir(tmp_path / "v") == ["old.txt"] and os.listdir(tmp_path) == ["v"]
    with io.atomic_dir(tmp_path / "v", overwrite=True) as tmp:
        Path(tmp, "new.txt").write_text("new")
        assert os.listdir(tmp_path / "v") == ["old.txt"]
    assert os.listdir(tmp_path / "v") == ["new.txt"] and os.listdir(tmp_path) == ["v"]
