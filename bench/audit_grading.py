"""The audit's expectations and grading (see audit_bad_inputs.py), and the fixtures its rows share."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import math
import os
import re
import signal
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROW_LIMIT = 240  # seconds a row may take inside its process (SIGALRM); the parent's watchdog backs it


class Hang(BaseException):
    """A row ran past ROW_LIMIT."""


def _alarm(signum, frame):
    raise Hang()


@dataclasses.dataclass
class Refuse:
    subs: tuple = ()
    types: tuple = (ValueError,)


@dataclasses.dataclass
class Handle:
    check: Callable[[Any], str | None]


@dataclasses.dataclass
class Either:
    check: Callable[[Any], str | None]
    subs: tuple = ()
    types: tuple = (ValueError,)


@dataclasses.dataclass
class Cli:
    subs: tuple = ()


@dataclasses.dataclass
class CliOk:
    check: Callable[[str], str | None] | None = None


@dataclasses.dataclass
class Row:
    surface: str
    id: str
    call: Callable[[], Any]
    expect: Any


NAMES_WHAT_CAME = (
    "got",
    "given",
    "found",
    "holds",
    "has ",
    "is ",
    "are ",
    "was ",
    "passed",
    "gave",
    "unknown",
    "unrecognized",
    "not recognized",
    "received",
    "no such file",
    "did not hold",
    "starts with",
)


def _contains(message: str, sub: Any) -> bool:
    low = message.lower()
    if isinstance(sub, tuple):
        return any(str(s).lower() in low for s in sub)
    return str(sub).lower() in low


def _numbers(value: Any) -> list[np.ndarray]:
    """The numeric arrays in a result (tensors, arrays, dicts, lists)."""
    if value is None or isinstance(value, (str, bytes, bool)):
        return []
    if isinstance(value, dict):
        return [a for v in value.values() for a in _numbers(v)]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _numbers(v)]
    try:
        arr = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    except Exception:
        return []
    return [arr] if arr.dtype.kind in "fcbiu" else []


def finite(result: Any) -> str | None:
    """None if every number in ``result`` is finite, else what is not."""
    for arr in _numbers(result):
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            return f"non-finite output ({int(np.sum(~np.isfinite(arr)))} of {arr.size} values)"
    return None


def finite_of(shape: tuple) -> Callable[[Any], str | None]:
    """Finite, and the first array has ``shape``."""

    def check(result: Any) -> str | None:
        bad = finite(result)
        if bad:
            return bad
        arrays = _numbers(result)
        if not arrays:
            return f"no array returned (got {type(result).__name__})"
        if tuple(arrays[0].shape) != tuple(shape):
            return f"output of shape {tuple(arrays[0].shape)}, expected {tuple(shape)}"
        return None

    return check


def anything(result: Any) -> str | None:
    return None


def _error_grade(err: BaseException, subs: tuple, types: tuple) -> tuple[str, str]:
    message = f"{type(err).__name__}: {err}".replace("\n", " ")
    short = message[:300]
    if not isinstance(err, types):
        generic = not isinstance(err, (ValueError, TypeError, OSError, KeyError))
        return "poor", f"refused with {'a generic ' if generic else 'another '}error type: {short}"
    missing = [s for s in subs if not _contains(str(err), s)]
    if missing:
        return "poor", f"message lacks {missing}: {short}"
    quoted = re.search(r"'[^']+'", str(err)) is not None  # the value or path that came, quoted
    if not quoted and not any(w in str(err).lower() for w in NAMES_WHAT_CAME):
        return "poor", f"message does not say what came: {short}"
    return "good", short


def grade(row: Row) -> tuple[str, str]:
    """Runs one row; returns (grade, note)."""
    expect = row.expect
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(ROW_LIMIT)
    try:
        if isinstance(expect, (Cli, CliOk)):
            code, out, err = row.call()
            return _cli_grade(expect, code, out, err)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = row.call()
            flags = [str(w.message) for w in caught if "inf or NaN" in str(w.message)]
        except Hang:
            raise
        except BaseException as err:
            if isinstance(err, (KeyboardInterrupt, SystemExit)) and not isinstance(err, SystemExit):
                raise
            if isinstance(expect, Handle):
                kind = "poor" if isinstance(err, (ValueError, TypeError)) else "bad"
                return kind, f"refused a valid input: {type(err).__name__}: {str(err)[:300]}"
            return _error_grade(err, expect.subs, expect.types)
        if isinstance(expect, Refuse):
            bad = finite(result)
            if bad and flags:
                return "poor", f"accepted with {bad}, flagged by a warning: {flags[0][:200]}"
            return "bad", f"accepted silently{' with ' + bad if bad else ''}: {_describe(result)}"
        problem = expect.check(result)
        if problem and problem.startswith("non-finite") and flags:
            return "good", f"{problem}, flagged by a warning: {flags[0][:200]}"
        return ("bad", problem) if problem else ("good", f"handled: {_describe(result)}")
    except Hang:
        return "bad", f"hang: no answer in {ROW_LIMIT} s"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _describe(result: Any) -> str:
    arrays = _numbers(result)
    if arrays:
        a = arrays[0]
        head = np.array2string(a.ravel()[:3], precision=3)
        return f"{type(result).__name__} shape {tuple(a.shape)} dtype {a.dtype} {head}"
    return repr(result)[:120]


def _cli_grade(expect, code: int, out: str, err: str) -> tuple[str, str]:
    if "Traceback" in err:
        return "bad", f"traceback (exit {code}): {err[-300:]}"
    lines = [x for x in err.splitlines() if x.strip()]
    last = lines[-1] if lines else ""
    if isinstance(expect, CliOk):
        if code != 0:
            return "bad", f"exit {code} on a valid call: {last[:300]}"
        problem = expect.check(out) if expect.check else None
        return ("bad", problem) if problem else ("good", f"exit 0: {out.strip()[-150:]}")
    if code == 0:
        return "bad", f"exit 0: accepted silently: {out.strip()[-200:]}"
    if code == 1 and "internal error" in last:
        return "bad", f"internal error (exit 1): {last[:300]}"
    if code != 2:
        return "bad", f"exit {code}: {last[:300]}"
    message = last.split(": error: ", 1)[-1]
    if not last.startswith("tfflows"):
        return "poor", f"exit 2 but the last line is not tfflows' message: {last[:300]}"
    missing = [s for s in expect.subs if not _contains(message, s)]
    if missing:
        return "poor", f"message lacks {missing}: {last[:300]}"
    return "good", last[:300]


def cli(*argv: str) -> tuple[int, str, str]:
    """``tfflows ARGV`` in this process: (exit status, stdout, stderr)."""
    from tfflows.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:
            if isinstance(exit_.code, str):
                err.write(exit_.code)
            code = exit_.code if isinstance(exit_.code, int) else 1
        except Hang:
            raise
        except BaseException as e:
            import traceback

            err.write("Traceback (escaped main):\n" + "".join(traceback.format_exception(e)))
            code = 1
    return code, out.getvalue(), err.getvalue()


# -- shared fixtures ---------------------------------------------------------------------
TMP = Path(os.environ.get("TFFLOWS_AUDIT_TMP", "/tmp/tfflows_audit"))
_counter = [0]


def fresh(name: str = "d") -> Path:
    """A new empty folder under the audit's temporary folder."""
    _counter[0] += 1
    path = TMP / f"{name}_{os.getpid()}_{_counter[0]}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def write(path: Path, content: bytes | str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


@functools.cache
def entry_models() -> dict[str, Any]:
    """Each registered FlowModel entry's ``tiny`` builder, by ``name-kind``."""
    import tfflows
    from tfflows.models import registry

    return {
        f"{e.name}-{e.data_kind}": e.tiny
        for e in registry.entries()
        if issubclass(e.model_class, tfflows.FlowModel)
    }


@functools.cache
def tiny(key: str, cond: str = "") -> Any:
    """A tiny model (initialised on valid data); ``cond``: '' / 'labels' / 'context'."""
    kwargs = {"labels": {"num_classes": 3}, "context": {"context_dim": 2}}.get(cond, {})
    model = entry_models()[key](**kwargs)
    x = valid_x(model, 8)
    context = valid_context(model, 8)
    if context is None:
        model.initialize(x)
    else:
        model.initialize((x, context))
    return model


def valid_x(model: Any, n: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, *model.spec.event_shape)
    if model.spec.data_kind == "image":
        return rng.uniform(0, 2**model.spec.num_bits, shape).astype("float32")
    return rng.standard_normal(shape).astype("float32")


def valid_context(model: Any, n: int = 2) -> Any:
    if model.num_classes is not None:
        return (np.arange(n) % model.num_classes).astype("int32")
    if model.context_dim is not None:
        return np.random.default_rng(1).standard_normal((n, model.context_dim)).astype("float32")
    return None


def nan_(x):
    return math.nan
