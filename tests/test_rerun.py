"""Rerunning ``tfflows train`` never loses a finished model; resuming survives a damaged backup.

The runs are tiny (an 8×8 Glow, a few steps) and go through ``tfflows.cli.main``
in this process. One finished run is trained per module and copied into each
test's folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

import tfflows
from tfflows.backup import ResumableBackup
from tfflows.callbacks import checkpoint_files

from helpers import TINY_IDX, CliError, cli

DATASET = TINY_IDX


def _train(out: Path, data_dir: Path, *extra: str, epochs: int = 2) -> str:
    return cli(
        "train",
        "--dataset",
        DATASET,
        "--data-dir",
        str(data_dir),
        "--epochs",
        str(epochs),
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "16",
        "--width",
        "8",
        "--steps",
        "1",
        "--levels",
        "1",
        "--val-every",
        "100",
        "--out",
        str(out),
        "--verbose",
        "0",
        "--extras-share",
        "1",
        "--keep-checkpoints",
        "10",
        *extra,
    )  # a checkpoint every epoch


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: bare {constant}")

    return json.loads(text, parse_constant=refuse)


def _results(out: Path) -> dict:
    return _strict((out / "results.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    _train(out, data_dir)
    return out


@pytest.fixture
def run(finished, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def test_finished_run_records_its_source_in_strict_json(finished, data_dir):
    result = _results(finished)
    assert result["dataset"] == DATASET and result["data_dir"] == str(data_dir)
    assert result["epochs_run"] == 2 and result["epochs_total"] == 2
    assert result["resumed_from"] is None
    assert [e for e, _ in checkpoint_files(str(finished / "checkpoints"))] == [2, 1]


def test_rerun_without_a_flag_keeps_the_finished_model(run, data_dir):
    before = {name: (run / name).read_bytes() for name in ("model.keras", "results.json")}
    with pytest.raises(CliError, match=r"holds a finished run.*--resume.*--overwrite"):
        _train(run, data_dir)
    for name, content in before.items():
        assert (run / name).read_bytes() == content, f"{name} changed"


def test_resume_continues_to_epochs_in_total(run, data_dir):
    before = (run / "model.keras").read_bytes()
    _train(run, data_dir, "--resume", epochs=3)
    result = _results(run)
    assert result["epochs_run"] == 1 and result["epochs_total"] == 3
    assert result["resumed_from"] == str(run / "checkpoints" / "epoch_002.keras")
    assert [e for e, _ in checkpoint_files(str(run / "checkpoints"))] == [3, 2, 1]
    assert (run / "model.keras").read_bytes() != before


def test_overwrite_starts_over_and_removes_only_tfflows_files(run, data_dir):
    (run / "checkpoints" / "epoch_009.keras").write_bytes(b"an old run's checkpoint")
    (run / "notes.txt").write_text("mine")
    _train(run, data_dir, "--overwrite")
    result = _results(run)
    assert result["epochs_total"] == 2 and result["resumed_from"] is None
    assert [e for e, _ in checkpoint_files(str(run / "checkpoints"))] == [2, 1]
    assert (run / "notes.txt").read_text() == "mine"


def test_interrupted_run_needs_a_flag(run, data_dir):
    (run / "results.json").unlink()
    (run / "model.keras").unlink()
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    with pytest.raises(CliError, match=r"holds an interrupted run.*--resume.*--overwrite"):
        _train(run, data_dir)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


def test_truncated_backup_resumes_from_the_newest_valid_checkpoint(run, data_dir):
    """An interrupted run whose backup an older tfflows left truncated, and a damaged checkpoint."""
    (run / "results.json").unlink()
    (run / "model.keras").unlink()
    backup = run / "backup"
    backup.mkdir()
    model = keras.models.load_model(run / "checkpoints" / "epoch_002.keras")
    model.save_weights(str(backup / "latest.weights.h5"))
    whole = (backup / "latest.weights.h5").read_bytes()
    (backup / "latest.weights.h5").write_bytes(whole[: len(whole) // 2])
    (backup / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')
    checkpoints = run / "checkpoints"
    (checkpoints / "epoch_003.keras").write_bytes(b"PK\x03\x04 cut short")  # newest, but damaged
    (checkpoints / ".epoch_004.tmp-abc.keras").write_bytes(b"")  # an unfinished write: ignored

    with pytest.warns(RuntimeWarning) as caught:
        _train(run, data_dir, "--resume", epochs=3)
    messages = [str(w.message) for w in caught]
    assert any("latest.weights.h5" in m and "damaged" in m for m in messages), messages
    assert any("epoch_003.keras" in m and "does not load" in m for m in messages), messages
    result = _results(run)
    assert result["resumed_from"] == str(checkpoints / "epoch_002.keras")
    assert result["epochs_run"] == 1 and result["epochs_total"] == 3
    keras.models.load_model(checkpoints / "epoch_003.keras")  # rewritten by the resumed run


def test_evaluate_uses_the_recorded_source_and_prints_strict_json(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recorded data_dir is absolute
    out = _strict(cli("evaluate", str(run / "model.keras")))
    assert out["dataset"] == DATASET and out["examples"] == 32
    assert np.isfinite(out["bits_per_dim"])
    # A model whose density overflows: the loss is infinite, and the output stays strict JSON.
    model = keras.models.load_model(run / "model.keras")
    for weight in model.weights:
        if weight.path.endswith("log_scale"):
            weight.assign(np.full(weight.shape, 80.0, np.float32))  # e^80 · x overflows float32
    model.save(str(run / "model.keras"))
    out = _strict(cli("evaluate", str(run / "model.keras")))
    assert out["loss"] is None and out["bits_per_dim"] is None


# -- ResumableBackup on its own: a tiny vector flow, no checkpoints ----------------------


def _vector_fit(backup: str, epochs: int = 2) -> tuple[keras.callbacks.History, ResumableBackup]:
    model = tfflows.VectorRealNVP(2, num_steps=1, width=4)
    model.compile(optimizer="adam")
    callback = ResumableBackup(backup)
    x = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
    return model.fit(x, epochs=epochs, batch_size=16, verbose=0, callbacks=[callback]), callback


DAMAGES = {
    "truncated_weights": (
        {
            "latest.weights.h5": b"\x89HDF\r\n\x1a\n" + bytes(64),
            "training_metadata.json": b'{"epoch": 1, "batch": 0}',
        },
        "latest.weights.h5",
    ),
    "unreadable_metadata": ({"training_metadata.json": b'{"epoch": 1, "ba'}, "training_metadata.json"),
    "metadata_without_weights": (
        {"training_metadata.json": b'{"epoch": 1, "batch": 0}'},
        "latest.weights.h5",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
def test_damaged_backup_without_checkpoints_starts_fresh(tmp_path, damage):
    files, named = DAMAGES[damage]
    backup = tmp_path / "backup"
    backup.mkdir()
    for name, content in files.items():
        (backup / name).write_bytes(content)
    with pytest.warns(RuntimeWarning, match=f"{named}.*damaged"):
        history, callback = _vector_fit(str(backup))
    assert history.epoch == [0, 1], "a damaged backup must not skip epochs"
    assert callback.initial_epoch == 0 and callback.restored_from is None


def test_damaged_backup_warns_and_leaves_the_weights_before_any_step(tmp_path):
    # The restore alone, without fit (nothing traced): the fast tier's check of tfflows.backup.
    files, named = DAMAGES["truncated_weights"]
    backup = tmp_path / "backup"
    backup.mkdir()
    for name, content in files.items():
        (backup / name).write_bytes(content)
    model = tfflows.VectorRealNVP(2, num_steps=1, width=4)
    model.compile(optimizer="adam")
    before = [np.array(w) for w in model.weights]
    callback = ResumableBackup(str(backup), checkpoint_dir=str(tmp_path / "checkpoints"))
    callback.set_model(model)
    with pytest.warns(RuntimeWarning, match=f"{named}.*damaged"):
        callback.on_train_begin()
    assert callback.initial_epoch == 0 and callback.restored_from is None
    for a, b in zip(model.weights, before):
        np.testing.assert_array_equal(np.array(a), b)


def test_backup_writes_strict_metadata_and_restores_it(tmp_path):
    backup = tmp_path / "backup"
    _, callback = _vector_fit(str(backup))
    assert not backup.exists(), "a finished fit removes its backup"
    callback.delete_checkpoint = False
    callback._current_epoch, callback._last_batch_seen = 2, 0
    callback._save_model()
    metadata = _strict((backup / "training_metadata.json").read_text())
    assert {k: metadata[k] for k in ("epoch", "batch")} == {"epoch": 2, "batch": 0}
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "training_metadata.json"]
    history, resumed = _vector_fit(str(backup), epochs=3)
    assert history.epoch == [2] and resumed.restored_from == str(backup)


def test_backup_weights_newer_than_their_metadata_are_not_resumed(tmp_path):
    """A run killed between renaming the weights and the metadata into place."""
    backup = tmp_path / "backup"
    _, callback = _vector_fit(str(backup))
    callback._current_epoch = 2
    callback._save_model()
    for weight in callback.model.trainable_weights:
        weight.assign(weight + 1.0)
    callback.model.save_weights(str(backup / "latest.weights.h5"))  # the next epoch's weights
    with pytest.warns(RuntimeWarning, match="latest.weights.h5.*damaged.*not the file"):
        history, resumed = _vector_fit(str(backup), epochs=3)
    assert history.epoch == [0, 1, 2] and resumed.restored_from is None


# -- issue 21: leftovers, and one run per folder ---------------------------------------------------
def _dead_pid() -> int:
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_resume_removes_the_leftovers_of_killed_writes_and_keeps_user_files(run, data_dir):
    (run / "results.json").unlink()
    (run / "model.keras").unlink()
    dead = _dead_pid()
    leftovers = [
        run / "checkpoints" / f".epoch_003.tmp-{dead}-ab12cd34.keras",
        run / "checkpoints" / ".epoch_004.tmp-ab12cd34.keras",  # named before the PID was
        run / f".results.tmp-{dead}-zz_00000.json",
    ]
    for path in leftovers:
        path.write_bytes(b"PK\x03\x04 cut short")
    mine = [run / ".notes.tmp-mine", run / "checkpoints" / "my_epoch_003.keras", run / "notes.txt"]
    for path in mine:
        path.write_text("mine")
    _train(run, data_dir, "--resume", epochs=3)
    assert _results(run)["epochs_total"] == 3
    for path in leftovers:
        assert not path.exists(), path
    for path in mine:
        assert path.read_text() == "mine", path
    assert not (run / ".tfflows.lock").exists(), "the lock is released at the end of the run"


def _start_train(out: Path, data_dir: Path, log: Path, *extra: str):
    import subprocess
    import sys

    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
    }
    argv = [
        sys.executable,
        "-m",
        "tfflows.cli",
        "train",
        "--dataset",
        DATASET,
        "--data-dir",
        str(data_dir),
        "--batch-size",
        "16",
        "--width",
        "8",
        "--steps",
        "1",
        "--levels",
        "1",
        "--val-every",
        "1000",
        "--out",
        str(out),
        "--verbose",
        "0",
        *extra,
    ]
    return subprocess.Popen(argv, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_a_second_run_into_a_held_folder_is_refused_and_a_killed_runs_lock_taken_over(tmp_path, data_dir):
    """Two ``tfflows train`` processes into one --out: the second exits 2 naming the first (issue 21)."""
    import signal
    import time

    from tfflows.runlock import LOCK_NAME, StaleLockWarning

    out = tmp_path / "run"
    first = _start_train(
        out,
        data_dir,
        tmp_path / "first.log",
        "--epochs",
        "100000",
        "--steps-per-epoch",
        "1",
        "--time-limit",
        "10",
    )
    try:
        deadline = time.monotonic() + 600  # a bound on a loaded machine, not a measurement
        while f'"pid": {first.pid}' not in (
            (out / LOCK_NAME).read_text() if (out / LOCK_NAME).exists() else ""
        ):
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.2)
        # Held still while the second run starts: alive and holding the lock, as a running
        # one is, without spending the CPU of training on (SIGKILL ends it stopped as well).
        os.kill(first.pid, signal.SIGSTOP)
        second = _start_train(out, data_dir, tmp_path / "second.log", "--epochs", "1", "--resume")
        assert second.wait(timeout=600) == 2
        said = (tmp_path / "second.log").read_text()
        assert f"is in use by another tfflows run: PID {first.pid} on host" in said, said
        assert "Traceback" not in said, said
        assert first.poll() is None, "the first run goes on"
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert f'"pid": {first.pid}' in (out / LOCK_NAME).read_text(), "the killed run's lock file stays"
    with pytest.warns(
        StaleLockWarning, match=rf"took over the lock left by PID {first.pid} .*no longer runs"
    ):
        _train(out, data_dir, "--overwrite", epochs=1)
    assert _results(out)["epochs_total"] == 1
    assert not (out / LOCK_NAME).exists()
