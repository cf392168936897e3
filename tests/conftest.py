"""Shared test set-up: import paths, quiet TensorFlow, and a log of numeric errors.

Numeric assertions go through the ``assert_close`` fixture, which also records
the largest error seen per check and dtype; the table is printed at the end of
the run so that the tolerances in the test modules can be judged against
what the code actually reaches.
"""

from __future__ import annotations

import collections
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

_TESTS = Path(__file__).resolve().parent
for path in (_TESTS.parent, _TESTS):  # the package without installing it; bijector_cases
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests stay in the fast tier: few examples, no deadline (TensorFlow's first call
# traces), no example database written into the checkout. HYPOTHESIS_PROFILE=thorough runs more.
settings.register_profile("tfflows", max_examples=20, deadline=None, database=None, print_blob=True)
settings.register_profile("thorough", max_examples=500, deadline=None, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tfflows"))

# (check, dtype) -> [max |got − want|, max |got − want| / (atol + rtol·|want|)]
_MAX_ERRORS: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0.0])


def _assert_close(check: str, got, want, atol: float, rtol: float) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{check}: shape {got.shape} != expected {want.shape}"
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    used = err / (atol + rtol * np.abs(want.astype(np.float64)))
    record = _MAX_ERRORS[(check, got.dtype.name)]
    if err.size:
        record[0] = max(record[0], float(np.max(err)))
        record[1] = max(record[1], float(np.max(used)))
    if np.ndim(atol) == 0:
        np.testing.assert_allclose(got, want, atol=atol, rtol=rtol, err_msg=check)
        return
    # An elementwise tolerance (a round-off bound per entry): report the worst entry.
    if err.size and np.max(used) > 1.0:
        worst = np.unravel_index(np.argmax(used), used.shape)
        raise AssertionError(
            f"{check}: {int(np.sum(used > 1.0))} of {used.size} entries out of tolerance; worst at "
            f"{worst}: got {got[worst]!r}, want {want[worst]!r}, error {err[worst]:.3e} is "
            f"{used[worst]:.2f}× its tolerance {np.broadcast_to(atol, used.shape)[worst]:.3e}"
        )


# -- tiers -------------------------------------------------------------------------------
# ``-m "not slow"`` is the fast tier. A test that trains beyond a few steps, starts a process
# or compiles with XLA is marked ``slow`` in its file; three rules that follow from a test's
# parameters, fixtures or measured cost are applied here, in one place:
XLA_IDS = {"xla", "jit"}  # a parametrization compiled with jit_compile=True
SLOW_FIXTURES = {  # fixture: the marks of every test that uses it
    "served": ("slow",),  # exports six models and starts three processes (test_export.py)
    "killed": ("slow", "multiworker"),  # starts two workers, kills one, resumes it (test_multiworker.py)
    "trained_run": ("slow",),  # trains a tiny Glow with tfflows train (below)
    "trained": ("slow",),  # trains two tiny Glows for 3 epochs on the digits (test_ood.py)
    "trained_moons": ("slow",),  # 80 training steps (test_models.py)
    "runs": ("slow",),  # fits, saves, loads and fits again each model kind (test_saving.py)
    "finished": ("slow",),  # a tfflows train run that later tests resume (test_rerun.py)
}
# Tests that share a module- or session-scoped fixture holding a trained or exported model run
# on one pytest-xdist worker (``--dist loadgroup``, in pyproject.toml's addopts), so that the
# fixture is built once instead of once per worker; a parametrized fixture, once per parameter.
SHARED_FIXTURES = {
    "trained_run",  # conftest.py, used by several files
    "shared",  # test_bad_inputs.py
    "tiny",  # test_codec.py
    "shipped",  # test_codec.py
    "served",  # test_export.py
    "plateau_run",  # test_keras_training.py
    "glow_run",  # test_keras_training.py
    "served_elsewhere",  # test_model_contract.py
    "trained_moons",  # test_models.py
    "killed",  # test_multiworker.py
    "trained_models",  # test_ood.py
    "finished",  # test_rerun.py
    "glow_twins",  # test_reversible.py
    "runs",  # test_saving.py
    "mafs",  # test_tabular.py
    "conditional",  # test_distribution.py
}
# Tests measured costlier than 0.3 s in a one-process fast-tier run (a large model's trace, a
# float64 Jacobian, a docs page): slow too, so the fast tier stays within its 90 s on 2 cores.
# scripts/tier_tests.py writes the file from that run's JUnit XML.
COSTLY = {
    line.strip()
    for line in (_TESTS / "costly_tests.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        ids = set(callspec.id.split("-")) if callspec is not None else set()
        if ids & XLA_IDS:
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.xla)
        for fixture in SLOW_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            for mark in SLOW_FIXTURES[fixture]:
                item.add_marker(getattr(pytest.mark, mark))
        if item.nodeid in COSTLY:
            item.add_marker(pytest.mark.slow)
        params = callspec.params if callspec is not None else {}
        for fixture in sorted(SHARED_FIXTURES & set(getattr(item, "fixturenames", ()))):
            group = fixture if fixture not in params else f"{fixture}-{params[fixture]}"
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """The 8×8 IDX files of a fake Fashion-MNIST (``--dataset tiny_idx_tfflows --data-dir``)."""
    from helpers import write_tiny_idx

    return write_tiny_idx(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A finished ``tfflows train`` run folder: a tiny Glow, 2 epochs of 2 steps on the digits.

    Trained once per session (in this process, by ``tfflows.cli.main``) for the slow tests that
    only need a trained model and its results.json; tests must not change the folder.
    """
    from helpers import cli

    out = tmp_path_factory.mktemp("trained") / "run"
    cli(
        "train",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "16",
        "--width",
        "8",
        "--steps",
        "1",
        "--levels",
        "2",
        "--out",
        str(out),
        "--verbose",
        "0",
        "--extras-share",
        "1",
    )  # samples, checks and checkpoints after every epoch
    return out


@pytest.fixture
def assert_close():
    """``assert_close(check, got, want, atol=..., rtol=...)``, logging the error.

    ``atol`` may be an array broadcasting against ``want``: a bound per entry.
    """
    return _assert_close


def pytest_terminal_summary(terminalreporter) -> None:
    if not _MAX_ERRORS:
        return
    terminalreporter.section("largest numeric errors seen (abs, fraction of tolerance)")
    for (check, dtype), (err, used) in sorted(_MAX_ERRORS.items()):
        terminalreporter.write_line(f"{check:<28} {dtype:<8} {err:10.3e}  {used:6.3f}")


def pytest_sessionfinish(session) -> None:
    # Under pytest-xdist each worker hands its table to the controller (below).
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["max_errors"] = [[c, d, e, u] for (c, d), (e, u) in _MAX_ERRORS.items()]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """pytest-xdist's controller: merge a finished worker's table of numeric errors."""
    for check, dtype, err, used in getattr(node, "workeroutput", {}).get("max_errors", []):
        record = _MAX_ERRORS[(check, dtype)]
        record[0] = max(record[0], err)
        record[1] = max(record[1], used)
