"""Multi-worker training (tfflows.distributed): two worker processes on 127.0.0.1.

1. Two workers on global batches of 8 give the loss, step by step, and the
   weights of one process training on the same global batches with Keras ``fit``.
2. ActNorm's data-dependent initialisation is the same on both workers: that
   of the first global batch, not of either worker's half of it.
3. A worker killed (SIGKILL) mid-run after a checkpoint exists: restarted,
   the pair resumes from the chief's newest checkpoint and ends with the
   weights of the uninterrupted run; every checkpoint on disk loads.
4. ``tfflows train --workers 2``, two processes: both exit 0 and print no
   "tasks have crashed"; only the chief's ``--out`` gets ``model.keras``
   (which loads and scores) and ``results.json``.
5. Bad input: a port already taken, a worker that never joins (a timeout,
   not a hang), ``--workers`` without a cluster, a malformed ``TF_CONFIG``.

Each worker is its own process (tests/multiworker_job.py, or the CLI) on
free ports chosen at run time; every process is killed in ``finally``.
Starting a pair costs most of the time, so 1-3 share three launches: one
pair trains the uninterrupted run and then the run whose worker is killed,
one resumes it, and one is the CLI's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tfflows import distributed

import multiworker_job as job

JOB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multiworker_job.py")
ROOT = os.path.dirname(os.path.dirname(JOB))
RUN_TIMEOUT = 400.0  # seconds for a whole two-worker run: CI's 2 cores are shared


def test_fit_refuses_an_uncompiled_model_before_reading_the_data():
    # No strategy, no step traced: the fast tier's check of tfflows.distributed.training.
    import tensorflow as tf

    import tfflows

    model = tfflows.VectorRealNVP(2, num_steps=1, width=4)
    data = tf.data.Dataset.from_tensor_slices(np.zeros((4, 2), "float32")).batch(2)
    with pytest.raises(ValueError, match=r"expected a compiled model .* got VectorRealNVP without"):
        distributed.fit(model, data)
    assert distributed.checkpoints(None) == []


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def hosts(ports) -> str:
    return ",".join(f"127.0.0.1:{p}" for p in ports)


def start(index: int, cluster: str, out: str, *extra: str) -> subprocess.Popen:
    return launch([JOB, str(index), cluster, out, *extra], out, f"log{index}")


def launch(argv, logs: str, name: str) -> subprocess.Popen:
    """``python argv`` with this checkout first on the path; stdout and stderr into ``logs``."""
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    path = os.path.join(logs, f"{name}_{time.monotonic_ns()}.txt")
    with open(path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, *argv], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    proc.log_path = path
    return proc


def output(proc: subprocess.Popen) -> str:
    """What ``proc`` printed (stdout and stderr)."""
    with open(proc.log_path, encoding="utf-8", errors="replace") as f:
        return f.read()


def kill(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(timeout=30)


def finish(procs, timeout: float = RUN_TIMEOUT) -> None:
    """Waits for every process; each must exit with status 0 within ``timeout``."""
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    codes = [p.poll() for p in procs]
    assert codes == [0] * len(procs), f"worker exit codes {codes}"


def weights(out: str, name: str) -> list[np.ndarray]:
    with np.load(os.path.join(out, name)) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


STEPS = job.EPOCHS * job.EXAMPLES // job.GLOBAL_BATCH


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> dict:
    """One launch of the pair: the uninterrupted run (``worker*_ref_*``), then a checkpointed
    run whose worker 1 is killed (SIGKILL) once the chief has written a checkpoint."""
    out = str(tmp_path_factory.mktemp("two_workers"))
    ckpt = os.path.join(out, "checkpoints")
    cluster = hosts(free_ports(2))
    procs = [
        start(i, cluster, out, "--reference", "--checkpoint-dir", ckpt, "--pause", "1.5") for i in (0, 1)
    ]
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not distributed.checkpoints(ckpt) and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), "a worker stopped before the first checkpoint"
            time.sleep(0.2)
        assert distributed.checkpoints(ckpt), "no checkpoint within the time limit"
        procs[1].send_signal(signal.SIGKILL)  # mid-epoch: the first checkpoint is after step 2 of 4
        procs[1].wait(timeout=30)
        try:  # the survivor fails once its peer is gone (the coordination service's heartbeats)
            procs[0].wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
        survivor = procs[0].poll()  # measured: exit status 1, 8.7 s after the kill
    finally:
        kill(procs)
    return {"out": out, "checkpoints": ckpt, "written": distributed.checkpoints(ckpt), "survivor": survivor}


def test_two_workers_equal_one_process_on_the_global_batch(killed, assert_close):
    import keras

    out = killed["out"]
    init = weights(out, "worker0_ref_init.npz")
    losses = [json.load(open(os.path.join(out, f"worker{i}_ref_losses.json"))) for i in (0, 1)]
    assert len(losses[0]) == STEPS
    assert losses[0] == losses[1]  # the loss is the global batch's on each worker

    model = job.build_model()
    model.set_weights(init)  # the workers' start (ActNorm set), so only training is compared
    seen = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(logs["loss"]))
    for epoch in range(job.EPOCHS):
        model.fit(job.epoch_data(epoch), epochs=1, verbose=0, callbacks=[record])
    assert_close("2 workers loss", np.array(losses[0]), np.array(seen), atol=1e-4, rtol=1e-5)
    # Adam divides each gradient by its own running size, so the round-off of summing two
    # halves instead of one batch grows where a gradient is near 0 (ActNorm biases just after
    # their initialisation): measured up to 6.8e-5, where 8 steps move each weight ~6e-3.
    for i, (got, want) in enumerate(zip(weights(out, "worker0_ref_final.npz"), model.get_weights())):
        assert_close(f"2 workers weight {i}", got, want, atol=2e-4, rtol=1e-4)
    for got, want in zip(weights(out, "worker1_ref_final.npz"), weights(out, "worker0_ref_final.npz")):
        np.testing.assert_array_equal(got, want)


def test_actnorm_initialised_alike_from_the_global_batch(killed, assert_close):
    init = [weights(killed["out"], f"worker{i}_ref_init.npz") for i in (0, 1)]
    for a, b in zip(*init):
        np.testing.assert_array_equal(a, b)
    model = job.build_model()
    model.set_weights(init[0])
    actnorms = [layer for layer in model.flow_layers if layer.needs_data_init]
    assert len(actnorms) == 2
    chosen = {id(v) for layer in actnorms for v in (layer.log_scale, layer.bias)}
    index = [i for i, v in enumerate(model.weights) if id(v) in chosen]
    first = next(iter(job.epoch_data(0).take(1))).numpy()
    model.initialize(first, force=True)
    for i in index:
        assert_close(f"actnorm {i}", model.get_weights()[i], init[0][i], atol=1e-5, rtol=1e-5)
    model.initialize(first[: job.GLOBAL_BATCH // 2], force=True)  # worker 0's shard alone
    own = model.get_weights()
    assert max(float(np.max(np.abs(own[i] - init[0][i]))) for i in index) > 1e-3


def test_killed_worker_resumes_to_the_uninterrupted_weights(killed):
    out, ckpt, written = killed["out"], killed["checkpoints"], killed["written"]
    assert killed["survivor"] not in (None, 0), "the survivor should fail, not hang or succeed"
    assert written and written[0][0] < STEPS
    assert not os.path.exists(os.path.join(out, "worker0_final.npz"))
    for step, path in written:  # complete and readable, whatever moment the kill came
        state = json.load(open(os.path.join(path, "state.json")))
        assert state["global_step"] == step
        with np.load(os.path.join(path, "variables.npz")) as f:
            assert len(f.files) == len(state["variables"])
    cluster = hosts(free_ports(2))
    procs = [start(i, cluster, out, "--checkpoint-dir", ckpt) for i in (0, 1)]
    try:
        finish(procs)
    finally:
        kill(procs)
    resumed = json.load(open(os.path.join(out, "worker0_losses.json")))
    assert len(resumed) == STEPS - written[0][0]
    for got, want in zip(weights(out, "worker0_final.npz"), weights(out, "worker0_ref_final.npz")):
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6)
    for p in procs:  # ended through distributed.finish: no task reported as crashed
        assert "crashed" not in output(p).lower()


@pytest.mark.slow
@pytest.mark.multiworker
@pytest.mark.cli
def test_cli_two_workers_train_and_end_cleanly(tmp_path):
    import keras

    import tfflows
    from tfflows.data import load_images

    outs = [str(tmp_path / "chief"), str(tmp_path / "worker1")]  # as on two machines
    cluster = hosts(free_ports(2))
    train = [
        "-m",
        "tfflows.cli",
        "train",
        "--dataset",
        "digits",
        "--max-train",
        "64",
        "--levels",
        "1",
        "--steps",
        "2",
        "--width",
        "8",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--checkpoint-every",
        "1",
        "--verbose",
        "0",
        "--workers",
        "2",
        "--worker-hosts",
        cluster,
    ]
    procs = [
        launch([*train, "--worker-index", str(i), "--out", outs[i]], str(tmp_path), f"cli{i}") for i in (1, 0)
    ]  # worker 1 first, as the README shows
    try:
        finish(procs)
    finally:
        kill(procs)
    for p in procs:
        assert "crashed" not in output(p).lower(), output(p)[-2000:]
    assert "the chief writes the results" in output(procs[0])
    result = json.load(open(os.path.join(outs[0], "results.json")))
    assert result["workers"] == 2 and result["global_batch"] == 16 and result["train_steps"] == 2
    assert np.isfinite(result["test_bits_per_dim"]) and result["test_bits_per_dim"] > 0
    assert sorted(os.listdir(os.path.join(outs[0], "checkpoints"))) == ["step_00000001", "step_00000002"]
    for name in ("model.keras", "results.json"):
        assert not os.path.exists(os.path.join(outs[1], name))
    model = keras.models.load_model(os.path.join(outs[0], "model.keras"))
    assert isinstance(model, tfflows.Glow)
    images = load_images("digits", "test")[:4]
    log_prob = np.asarray(model.log_prob(images))
    assert log_prob.shape == (4,) and np.all(np.isfinite(log_prob))


# -- bad input: answered in this process, before TensorFlow starts a cluster ------------------


@pytest.mark.slow
@pytest.mark.multiworker
def test_port_taken_is_named():
    taken = socket.socket()
    taken.bind(("", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        config = distributed.cluster_config(worker_hosts=hosts([port, free_ports(1)[0]]), worker_index=0)
        with pytest.raises(ValueError, match=f"port {port} .*already taken"):
            distributed.connect(config, join_timeout=5)
    finally:
        taken.close()
    assert "TF_CONFIG" not in os.environ or json.loads(os.environ["TF_CONFIG"]) != config


@pytest.mark.slow
@pytest.mark.multiworker
def test_worker_that_never_joins_times_out():
    config = distributed.cluster_config(worker_hosts=hosts(free_ports(2)), worker_index=0)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"worker 1 at 127\.0\.0\.1:\d+ to join"):
        distributed.connect(config, join_timeout=2)
    assert time.monotonic() - start < 30


def test_workers_without_a_cluster(tmp_path, monkeypatch, capsys):
    from tfflows import cli

    monkeypatch.delenv("TF_CONFIG", raising=False)
    code = cli.main(["train", "--workers", "2", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--worker-hosts" in err and "TF_CONFIG" in err and "workers=2" in err
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tf_config="{not json"), "TF_CONFIG: expected JSON"),
        (dict(tf_config='{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}'), "'worker'"),
        (
            dict(tf_config='{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}'),
            "task 'worker' 3 is not in the cluster",
        ),
        (
            dict(worker_hosts="127.0.0.1:1,127.0.0.1:2", worker_index=2),
            r"worker_index: expected .* 0\.\.1, got 2",
        ),
        (dict(worker_hosts="127.0.0.1:1,127.0.0.1:2", worker_index=0, workers=3), "workers: expected 2"),
        (dict(worker_hosts="127.0.0.1,127.0.0.1:2", worker_index=0), "expected host:port"),
        (dict(worker_hosts="127.0.0.1:70000", worker_index=0), "port in 1..65535"),
    ],
    ids=["json", "no-workers", "index-outside", "hosts-index", "count", "no-port", "port-range"],
)
def test_bad_cluster_descriptions(kwargs, message):
    with pytest.raises(ValueError, match=message):
        distributed.cluster_config(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(timeout=0), r"timeout must be seconds > 0, got 0"),
        (dict(linger=-1.0), r"linger must be seconds > 0, got -1.0"),
        (dict(exit_code=256), r"exit_code must be None or an integer in 0..255, got 256"),
        (dict(exit_code=True), r"exit_code .* got True"),
    ],
    ids=["timeout", "linger", "exit-code", "exit-bool"],
)
def test_finish_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        distributed.finish(**kwargs)
