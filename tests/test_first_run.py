"""A first run that feels fast: the compile line, one line per epoch, quiet start-up, extras kept in budget.

The fast tests drive the callbacks with a small Keras model's real ``fit``;
one slow test runs a tiny ``tfflows train`` in a fresh process with its
stdout on a pipe, as a log file or CI sees it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tfflows.callbacks import FiniteCheckpoint, TimeLimit, checkpoint_files
from tfflows.cli.quiet import START_UP_NOISE, native_stderr_filtered
from tfflows.clock import Occasional, TrainingClock
from tfflows.progress import EpochProgress, format_seconds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dense() -> keras.Model:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


class _Recorder(keras.callbacks.Callback):
    """Records the epochs whose end it saw, taking ``seconds`` each time (a stand-in cost)."""

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__()
        self.seconds = seconds
        self.epochs: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.seconds)
        self.epochs.append(epoch + 1)


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            self.model.stop_training = True


# -- the printed lines -------------------------------------------------------------------


def test_progress_on_a_pipe_says_the_step_is_built_then_prints_one_clean_line_per_epoch():
    x, y = _data()
    out = io.StringIO()  # not a terminal: no live line
    progress = EpochProgress(stream=out)
    _dense().fit(x, y, batch_size=8, epochs=3, validation_data=(x, y), verbose=0, callbacks=[progress])
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("tfflows: building the training step: TensorFlow traces it into one graph")
    assert "takes a while" in lines[0]
    assert lines[1].startswith("tfflows: training step built in ") and lines[1].endswith(" s")
    epochs = lines[2:]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("loss " in line and "val_loss " in line for line in epochs)
    assert "left)" in epochs[0] and "left" not in epochs[2]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert progress.first_step_seconds is not None and progress.first_step_seconds > 0


def test_progress_on_a_terminal_rewrites_a_live_line_whose_estimate_starts_at_the_second_step():
    x, y = _data()
    out = io.StringIO()
    _dense().fit(
        x,
        y,
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[EpochProgress(stream=out, live=True, min_interval=0.0)],
    )
    text = out.getvalue()
    live = [part for part in text.split("\r") if part.startswith("epoch 1/1  batch")]
    assert [p.split()[3] for p in live] == [f"{b}/8" for b in range(1, 9)]
    # The first step's line has no estimate (it held the tracing); every later one has.
    assert "epoch ends in" not in live[0] and all("epoch ends in" in p for p in live[1:])
    assert text.endswith(")\n") and "epoch 1/1: loss" in text


def test_progress_under_a_time_limit_gives_the_time_the_limit_leaves():
    # 1,000 epochs of at least 0.05 s planned, a 20-second limit: the estimate says what the
    # limit leaves, not the minute 1,000 epochs would take.
    x, y = _data()
    out = io.StringIO()
    limit = TimeLimit(20.0)
    _dense().fit(
        x,
        y,
        batch_size=8,
        epochs=1000,
        verbose=0,
        callbacks=[limit, _Recorder(0.05), _StopAfter(3), EpochProgress(stream=out, time_limit=limit)],
    )
    epochs = [line for line in out.getvalue().splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 3
    # From the second epoch on the estimate counts the whole epoch (the first's holds only
    # its steps after the first): 998 more of them outlast the limit.
    assert all(line.endswith("left of the time limit)") for line in epochs[1:]), epochs
    left = [line.rsplit("about ", 1)[1].split(" ")[0] for line in epochs[1:]]
    assert all(text in ("0:20", "0:19", "0:18", "0:17", "0:16") for text in left), left
    assert 10 < limit.remaining() < 20


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 7.4, 65, 3723)] == ["0:00", "0:07", "1:05", "1:02:03"]


# -- TensorFlow's start-up noise ----------------------------------------------------------


def test_start_up_noise_is_dropped_and_everything_else_is_kept(capfd):
    noise = [  # as TensorFlow 2.21 writes them on a CPU machine
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796624189.866185   24211 port.cc:153] oneDNN custom operations are on.",
        "I0000 00:00:1796624189.866616   24211 cudart_stub.cc:31] Could not find cuda drivers on your "
        "machine, GPU will not be used.",
        "E0000 00:00:1796624207.910699   24211 cuda_platform.cc:52] failed call to cuInit: INTERNAL: (303)",
    ]
    real = "E0000 00:00:1796624207.910699   24211 some_kernel.cc:12] a real error"
    with native_stderr_filtered():
        os.write(2, ("\n".join(noise + [real]) + "\n").encode())
        print("python's own stderr", file=sys.stderr)
    err = capfd.readouterr().err
    # (Under pytest sys.stderr is not file descriptor 2, so the order of the two may differ.)
    assert sorted(err.splitlines()) == sorted([real, "python's own stderr"])
    assert all(START_UP_NOISE.match(line) for line in noise[:3])


def test_cuinit_errors_show_where_a_driver_was_found(capfd):
    error = "E0000 00:00:1796624207.910699   24211 cuda_platform.cc:52] failed call to cuInit: INTERNAL"
    with native_stderr_filtered():
        os.write(2, (error + "\n").encode())
    assert capfd.readouterr().err.splitlines() == [error]


def test_lines_are_all_kept_when_the_block_raises(capfd):
    line = "I0000 00:00:1796624189.866185   24211 port.cc:153] oneDNN custom operations are on."
    with pytest.raises(RuntimeError, match="import failed"):
        with native_stderr_filtered():
            os.write(2, (line + "\n").encode())
            raise RuntimeError("import failed")
    assert capfd.readouterr().err.splitlines() == [line]


# -- extras within their share of the wall time -------------------------------------------


@pytest.mark.parametrize(
    "since, cost, share, due",
    [
        (9.0, 1.0, 0.1, True),
        (8.9, 1.0, 0.1, False),
        (0.0, 1.0, 1.0, True),
        (1.0, 1.0, 0.5, True),
        (0.9, 1.0, 0.5, False),
        (100.0, 0.0, 0.1, True),
    ],
)
def test_an_extra_is_due_once_its_cost_is_at_most_its_share(since, cost, share, due):
    assert Occasional.due(since, cost, share) is due


def test_extras_costlier_than_their_share_run_only_after_the_last_epoch():
    x, y = _data()
    clock = TrainingClock()
    extra = _Recorder(seconds=0.3)
    occasional = Occasional([extra], clock)
    _dense().fit(x, y, batch_size=8, epochs=6, verbose=0, callbacks=clock.around([occasional]))
    # Six epochs of a few milliseconds: 0.3 s of extras after any would take far more than 10%.
    assert occasional.epochs_run == extra.epochs == [6]
    assert "callback:_Recorder" in clock.breakdown()


def test_extras_with_the_whole_share_run_after_every_epoch_and_at_an_early_stop():
    x, y = _data()
    clock = TrainingClock()
    extra = _Recorder()
    occasional = Occasional([extra], clock, share=1.0)
    _dense().fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=clock.around([occasional]))
    assert extra.epochs == occasional.epochs_run == [1, 2, 3, 4]

    clock = TrainingClock()
    extra = _Recorder(seconds=0.3)
    occasional = Occasional([extra], clock)
    _dense().fit(
        x, y, batch_size=8, epochs=10, verbose=0, callbacks=clock.around([_StopAfter(3), occasional])
    )
    assert extra.epochs == [3]  # training stopped after epoch 3: its extras ran


def test_occasional_refuses_a_share_outside_0_1():
    with pytest.raises(ValueError, match=r"share must be in \(0, 1\], got 0"):
        Occasional([], TrainingClock(), share=0)


# -- checkpoint retention -------------------------------------------------------------------


def test_checkpoints_keep_the_newest_n_and_the_best(tmp_path):
    model = _dense()
    checkpoint = FiniteCheckpoint(str(tmp_path / "epoch_{epoch:03d}.keras"), keep=2)
    checkpoint.set_model(model)
    for epoch, val_loss in enumerate([5.0, 1.0, 4.0, 3.0, 2.0]):
        checkpoint.on_epoch_end(epoch, {"val_loss": val_loss})
    assert [e for e, _ in checkpoint_files(str(tmp_path))] == [5, 4, 2]
    assert checkpoint.best == str(tmp_path / "epoch_002.keras")
    assert checkpoint.last_good == str(tmp_path / "epoch_005.keras")


def test_checkpoint_retention_refuses_a_count_below_one():
    with pytest.raises(ValueError, match="keep must be a whole number >= 1 or None, got 0"):
        FiniteCheckpoint("epoch_{epoch:03d}.keras", keep=0)


# -- one short run, as a user's shell starts it ---------------------------------------------


@pytest.mark.slow
def test_tfflows_train_on_a_pipe_is_quiet_and_prints_one_line_per_epoch(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfflows.cli",
            "train",
            "--epochs",
            "3",
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
            "--out",
            str(out),
            "--keep-checkpoints",
            "1",
            "--extras-share",
            "1",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("tfflows: building the training step") for line in lines)
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == [
        "epoch 1/3",
        "epoch 2/3",
        "epoch 3/3",
    ]
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout
    for noise in ("oneDNN", "absl::InitializeLog", "cuInit", "cuda drivers"):
        assert noise not in proc.stderr, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["extras_epochs"] == [1, 2, 3]
    kept = [e for e, _ in checkpoint_files(str(out / "checkpoints"))]
    best = int(os.path.basename(results["best_checkpoint"])[6:9])
    assert kept == sorted({3, best}, reverse=True)
