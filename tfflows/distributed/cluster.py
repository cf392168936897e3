"""The cluster of a multi-worker run: ``TF_CONFIG``, joining it, and leaving it cleanly."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from typing import TypeGuard

import numpy as np
import tensorflow as tf

__all__ = ["cluster_config", "connect", "finish", "is_chief", "worker_address"]

_ADDRESS = re.compile(r"^(?P<host>[^\s:,]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})$")


# -- the cluster ---------------------------------------------------------------


def _parse_address(text: str, where: str) -> tuple[str, int]:
    match = _ADDRESS.match(text.strip())
    port = int(match.group("port")) if match else 0
    if not match or not 0 < port < 65536:
        raise ValueError(f"{where}: expected host:port with a port in 1..65535, got {text!r}.")
    return match.group("host").strip("[]"), port


def _is_index(value: object) -> TypeGuard[int | np.integer]:
    """An integer (not a bool, not a float that happens to be whole): a task's place in its job."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def cluster_config(
    workers: int | None = None,
    worker_index: int | None = None,
    worker_hosts: str | Sequence[str] | None = None,
    tf_config: str | None = None,
) -> dict:
    """The ``TF_CONFIG`` of this worker, from the arguments or from ``tf_config`` (JSON).

    ``worker_hosts`` (``"h0:p0,h1:p1"`` or a list) with ``worker_index``
    describe the cluster; without them ``tf_config`` does (the
    ``TF_CONFIG`` environment variable when None). ``workers``, when given,
    must equal the cluster's size. Task 0 of the ``"worker"`` job (or the
    ``"chief"`` task) is the chief.

    Raises:
      ValueError: no usable description of the cluster, a malformed address,
        a worker index out of range or a worker count that does not match.
    """
    if isinstance(workers, bool) or (workers is not None and (not isinstance(workers, int) or workers < 1)):
        raise ValueError(f"workers: expected a positive integer, got {workers!r}.")
    if worker_hosts is not None:
        hosts = worker_hosts.split(",") if isinstance(worker_hosts, str) else list(worker_hosts)
        if not all(isinstance(h, str) for h in hosts):
            raise ValueError(f"worker_hosts: expected 'host:port' strings, got {hosts!r}.")
        empty = [i for i, h in enumerate(hosts) if not h.strip()]
        if empty:
            # A blank entry would shift every later worker's index: refused, not skipped.
            raise ValueError(
                f"worker_hosts: expected 'host:port' entries, got an empty one at place {empty[0]} "
                f"of {worker_hosts!r}."
            )
        hosts = [h.strip() for h in hosts]
        for host in hosts:
            _parse_address(host, "worker_hosts")
        if workers is not None and workers != len(hosts):
            raise ValueError(
                f"workers: expected {len(hosts)} (the number of worker_hosts "
                f"{','.join(hosts)}), got {workers}."
            )
        if not _is_index(worker_index) or not 0 <= worker_index < len(hosts):
            raise ValueError(
                f"worker_index: expected this worker's place in worker_hosts, "
                f"0..{len(hosts) - 1}, got {worker_index!r}."
            )
        if len(set(hosts)) != len(hosts):
            raise ValueError(f"worker_hosts: expected distinct addresses, got {','.join(hosts)}.")
        return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": int(worker_index)}}
    text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not text.strip():
        raise ValueError(
            "multi-worker training needs the cluster: expected worker_hosts "
            "(--worker-hosts host0:port0,host1:port1) with worker_index (--worker-index), or a "
            f"TF_CONFIG environment variable; got workers={workers!r} and neither."
        )
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], task["index"]
        jobs = dict(cluster.items())
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(
            'TF_CONFIG: expected JSON {"cluster": {"worker": ["host:port", ...]}, "task": '
            f'{{"type": "worker", "index": i}}}}, got {text[:200]!r} ({type(err).__name__}: {err}).'
        ) from None
    unknown = sorted(set(jobs) - {"chief", "worker"})
    if unknown or (not jobs.get("worker") and not jobs.get("chief")):
        raise ValueError(
            f"TF_CONFIG: expected a cluster of 'worker' (and at most one 'chief') "
            f"tasks, got jobs {sorted(jobs)}."
        )
    for job, addresses in jobs.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ValueError(
                f"TF_CONFIG: expected cluster {job!r} as a list of 'host:port' strings, got {addresses!r}."
            )
    if not isinstance(kind, str) or not _is_index(index):
        raise ValueError(
            f'TF_CONFIG: expected the task as {{"type": a job name, "index": an integer}}, '
            f"got type {kind!r} and index {index!r}."
        )
    if len(jobs.get("chief", [])) > 1:
        raise ValueError(f"TF_CONFIG: expected at most one chief, got {jobs['chief']}.")
    for job, addresses in jobs.items():
        for address in addresses:
            _parse_address(address, f"TF_CONFIG cluster {job!r}")
    addresses = [a.strip() for job in jobs.values() for a in job]
    if len(set(addresses)) != len(addresses):
        raise ValueError(f"TF_CONFIG: expected distinct addresses, got {jobs}.")
    if kind not in jobs or not 0 <= index < len(jobs[kind]):
        raise ValueError(f"TF_CONFIG: task {kind!r} {index} is not in the cluster {jobs}.")
    total = sum(len(a) for a in jobs.values())
    if workers is not None and workers != total:
        raise ValueError(f"workers: expected {total} (the tasks in TF_CONFIG), got {workers}.")
    if worker_index is not None and (kind, index) != ("worker", worker_index):
        raise ValueError(
            f"worker_index: TF_CONFIG makes this task {kind!r} {index}, got worker_index={worker_index}."
        )
    return {"cluster": jobs, "task": {"type": kind, "index": index}}


def _tasks(config: dict) -> list[tuple[str, int, str]]:
    """Every task of the cluster as (type, index, address), the chief first."""
    out = []
    for job in ("chief", "worker"):
        out += [(job, i, a) for i, a in enumerate(config["cluster"].get(job, []))]
    return out


def worker_address(config: dict) -> str:
    """This task's ``host:port`` in ``config``."""
    task = config["task"]
    return config["cluster"][task["type"]][task["index"]]


def _claim_port(config: dict) -> socket.socket:
    """A listening socket on this task's port: the port is free, and peers can see us."""
    address = worker_address(config)
    _, port = _parse_address(address, "this worker's address")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("", port))  # gRPC listens on every interface
        sock.listen(16)
    except OSError as err:
        sock.close()
        raise ValueError(
            f"port {port} of this worker ({address}, task {config['task']['type']} "
            f"{config['task']['index']}) is already taken ({err.strerror}): another program or "
            "an earlier worker still holds it; choose a free port in the worker addresses."
        ) from None
    return sock


def _wait_for_peers(config: dict, own: socket.socket, timeout: float) -> None:
    """Returns once every peer accepts a connection; raises TimeoutError after ``timeout`` s."""
    me = (config["task"]["type"], config["task"]["index"])
    waiting = {(t, i): a for t, i, a in _tasks(config) if (t, i) != me}
    own.settimeout(0.05)
    deadline = time.monotonic() + timeout
    while waiting:
        for key, address in list(waiting.items()):
            host, port = _parse_address(address, "a peer's address")
            try:
                socket.create_connection((host, port), timeout=1.0).close()
                del waiting[key]
            except OSError:
                pass
        with contextlib.suppress(OSError):
            while True:  # answer the peers' probes
                own.accept()[0].close()
        if waiting and time.monotonic() > deadline:
            missing = ", ".join(f"{t} {i} at {a}" for (t, i), a in sorted(waiting.items()))
            raise TimeoutError(
                f"timed out after {timeout:g} s waiting for {missing} to join the cluster "
                f"(this is {me[0]} {me[1]} at {worker_address(config)}): start every worker "
                "with the same cluster, or raise the join timeout."
            )
        if waiting:
            time.sleep(0.2)


def connect(
    config: dict | None = None, join_timeout: float = 120.0, collective_timeout: float | None = 600.0
) -> tf.distribute.MultiWorkerMirroredStrategy:
    """Starts this worker's ``MultiWorkerMirroredStrategy`` once every worker is up.

    Call it at program start, before TensorFlow runs any op (the strategy
    configures the runtime). First this worker's port is checked (a taken
    port raises at once), then every peer must accept a connection within
    ``join_timeout`` seconds, then the strategy starts (gRPC, ring
    all-reduce). TensorFlow itself would wait for a missing worker forever
    in a call no signal but SIGKILL ends; should the start still not finish
    within ``join_timeout`` (a peer that answered, then died), the process
    prints why and exits with status 3.

    Args:
      config: the ``TF_CONFIG`` dict (:func:`cluster_config`; read from the
        environment when None). It is also put into ``TF_CONFIG``.
      join_timeout: seconds to wait for the other workers.
      collective_timeout: seconds any one collective (a step's all-reduce)
        may wait for a peer before it fails; None waits forever.

    Raises:
      ValueError: a bad cluster description, or this worker's port is taken.
      TimeoutError: a worker did not join within ``join_timeout``.
    """
    config = cluster_config() if config is None else config
    if not (isinstance(join_timeout, (int, float)) and join_timeout > 0):
        raise ValueError(f"join_timeout: expected seconds > 0, got {join_timeout!r}.")
    own = _claim_port(config)
    try:
        _wait_for_peers(config, own, float(join_timeout))
    finally:
        own.close()
    os.environ["TF_CONFIG"] = json.dumps(config)
    done = threading.Event()

    def watchdog():
        if not done.wait(join_timeout):
            print(
                f"tfflows: {config['task']['type']} {config['task']['index']}: the cluster did not "
                f"start within {join_timeout:g} s after every worker answered (one stopped?); "
                "exiting, as TensorFlow would wait forever.",
                file=sys.stderr,
                flush=True,
            )
            os._exit(3)

    threading.Thread(target=watchdog, daemon=True).start()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    finally:
        done.set()
    return strategy


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True on the task that writes files: the chief, or worker 0 without one (and without a cluster)."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    kind, index = resolver.task_type, resolver.task_id
    jobs = resolver.cluster_spec().as_dict()
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in jobs)


# -- checkpoints written by the chief ------------------------------------------

_FINISH_CALLS = itertools.count()


def _peers_gone(config: dict, me: tuple[str, int], linger: float) -> list[str]:
    """Waits (at most ``linger`` s) until no other task accepts connections; returns those that still do."""
    waiting = [(_parse_address(a, "a peer's address"), a) for t, i, a in _tasks(config) if (t, i) != me]
    deadline = time.monotonic() + linger
    while waiting:
        alive = []
        for (host, port), address in waiting:
            try:
                socket.create_connection((host, port), timeout=1.0).close()
                alive.append(((host, port), address))
            except OSError:
                pass
        waiting = alive
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return [address for _, address in waiting]


def _exit_now(code: int) -> None:
    """Ends the process at once (``os._exit``) once what it printed or logged is out."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def finish(
    strategy: tf.distribute.Strategy | None = None,
    timeout: float = 3600.0,
    linger: float = 30.0,
    exit_code: int | None = None,
) -> None:
    """Ends this worker's part of a multi-worker run so that every worker leaves cleanly.

    Call it on every worker as the run's last step, the chief after it has
    written its files. Every worker waits at one barrier of TensorFlow's
    coordination service until all have come (at most ``timeout`` s).
    Then the other workers go at once, while the chief, which hosts the
    coordination service, waits until their ports are closed (at most
    ``linger`` s), so that it leaves last.

    The order and the speed matter: TensorFlow has no call that leaves the
    coordination service. A worker whose heartbeats stop while the chief's
    service still runs is reported as crashed 10 s later ("The tasks have
    crashed ... CoordinationServiceError"), and a worker still running
    after the chief left fails its next heartbeat. A Python process that
    has loaded TensorFlow takes seconds to tear down (10-20 s measured on a
    busy core), so a script should end right after this call; with
    ``exit_code`` this function ends the process itself (stdout, stderr
    and ``logging`` flushed first, then ``os._exit``: no ``atexit``
    handlers run), the other workers just after the barrier, the chief once
    they are gone. Without a cluster (one process) it returns at once, or
    exits with ``exit_code``.

    Args:
      strategy: the run's strategy (the current one when None).
      timeout: seconds to wait for every worker at the barrier.
      linger: seconds the chief waits for the other workers to leave.
      exit_code: when given, the process ends with this status instead of returning.

    Raises:
      ValueError: a timeout or linger that is not a positive number of seconds.
      TimeoutError: a worker did not reach the barrier within ``timeout``.
      ConnectionError: a worker stopped (or the chief is gone) before all came.
    """
    for key, value in (("timeout", timeout), ("linger", linger)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"finish: {key} must be seconds > 0, got {value!r}.")
    if exit_code is not None and (
        isinstance(exit_code, bool) or not isinstance(exit_code, int) or not 0 <= exit_code <= 255
    ):
        raise ValueError(f"finish: exit_code must be None or an integer in 0..255, got {exit_code!r}.")
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if sum(len(a) for a in jobs.values()) > 1:
        _meet_and_leave(strategy, resolver, jobs, float(timeout), float(linger))
    if exit_code is not None:
        _exit_now(exit_code)


def _meet_and_leave(strategy, resolver, jobs: dict, timeout: float, linger: float) -> None:
    from tensorflow.python.eager import context  # the barrier has no public tf.* name

    me = (resolver.task_type, int(resolver.task_id))
    config = {"cluster": {job: list(a) for job, a in jobs.items()}, "task": {"type": me[0], "index": me[1]}}
    try:
        context.context().wait_at_barrier(f"tfflows_finish_{next(_FINISH_CALLS)}", int(timeout * 1000))
    except tf.errors.DeadlineExceededError:
        raise TimeoutError(
            f"finish: {me[0]} {me[1]} waited {timeout:g} s at the end of the run "
            "for the other workers; one of them has not finished (still writing, "
            "or stuck)."
        ) from None
    except tf.errors.OpError as err:
        first = str(err.message).strip().splitlines()[0][:300] if err.message else type(err).__name__
        raise ConnectionError(
            f"finish: {me[0]} {me[1]} could not end the run with the other "
            f"workers, one stopped first ({first})."
        ) from None
    if is_chief(strategy):
        left = _peers_gone(config, me, linger)
        if left:
            warnings.warn(
                f"tfflows.distributed.finish: {', '.join(left)} still running "
                f"{linger:g} s after the end of the run; the chief leaves anyway.",
                RuntimeWarning,
                stacklevel=3,
            )
