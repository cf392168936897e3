"""Atomic writes: every file tfflows writes is either the old complete one or the new one.

A writer gets a temporary name in the destination's own folder (so the final
``os.replace`` is a rename on one file system, which POSIX makes atomic),
writes there, flushes it to disk, and renames it into place. Killed at any
moment, by SIGTERM or SIGKILL, the folder holds the old file or the new one,
plus at worst a hidden ``.*.tmp-<pid>-*`` leftover that readers ignore, and
that the next write of the same file or folder (:func:`atomic_path`,
:func:`atomic_dir`), or :func:`remove_leftovers` (``tfflows train`` on its run
folder), removes once the process that left it is gone. A write that fails
raises :class:`WriteError`, naming the destination, not the temporary name.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

__all__ = [
    "TMP_MARK",
    "WriteError",
    "atomic_dir",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "is_temporary",
    "numbered_entries",
    "pid_alive",
    "remove_leftovers",
    "strict_json",
]

TMP_MARK = ".tmp-"
"""Every temporary name holds this; a leftover one starts with a dot as well."""

# Suffixes that libraries check: Keras wants ".keras" and ".weights.h5" at the end.
_SUFFIXES = (".weights.h5", ".keras", ".h5", ".json", ".png", ".csv")


def _suffix(path: str) -> str:
    for suffix in _SUFFIXES:
        if path.endswith(suffix):
            return suffix
    return os.path.splitext(path)[1]


_LEFTOVER = re.compile(
    r"^\.(?P<stem>.+?)\.tmp-(?:(?P<pid>\d+)-)?[a-z0-9_]{8}(?P<suffix>"
    + "|".join(re.escape(s) for s in _SUFFIXES)
    + r")?$"
)
"""The names :func:`atomic_path` and :func:`atomic_dir` give their temporary files and folders:
``.{name}.tmp-{pid}-{8 random}{suffix}`` (the pid is absent in names written before it was added)."""


class WriteError(OSError):
    """A file or folder could not be written; the message names the destination the caller gave."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot write {path!r}: {reason}")
        self.path = path


def _reason(err: BaseException, tmp: str | None, path: str) -> str:
    """What went wrong, in one line, with the temporary name replaced by the destination."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror + (f" (errno {err.errno})" if err.errno else "")
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    text = re.sub(r"\.tmp[0-9a-f]{32}\b", "", text)  # TensorFlow's own temporary names inside
    return text.replace(tmp, path) if tmp else text


def _is_write_failure(err: BaseException) -> bool:
    """An error of the file system (full disk, no permission ...), from Python or TensorFlow's writers."""
    if isinstance(err, WriteError):
        return False
    if isinstance(err, OSError):
        return True
    tf = sys.modules.get("tensorflow")  # a SavedModel writer reports I/O failures as OpError
    errors = getattr(tf, "errors", None)
    return errors is not None and isinstance(err, errors.OpError)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _abandoned(name: str, target: str | None = None) -> bool:
    """Whether ``name`` is a temporary leftover (of ``target``'s name, if given) whose writer is gone."""
    match = _LEFTOVER.match(name)
    if match is None:
        return False
    if target is not None:
        stem = match.group("stem")
        suffix = _suffix(target)
        base = target[: len(target) - len(suffix)] if suffix else target
        if stem not in (base, f"{base}.old") or (match.group("suffix") or "") != suffix:
            return False
    pid = match.group("pid")
    return pid is None or (int(pid) != os.getpid() and not pid_alive(int(pid)))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _remove_leftovers_of(folder: str, target: str) -> None:
    """Removes the leftovers of earlier, killed writes of ``folder/target``."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if _abandoned(name, target):
            _remove(os.path.join(folder, name))


def remove_leftovers(folder: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Removes what killed atomic writes left in ``folder`` (and below, with ``recursive``).

    Only tfflows' own temporary names go (``.{name}.tmp-{pid}-{8 random}``
    plus a known suffix, as :func:`atomic_path` and :func:`atomic_dir` make
    them), and only those whose writing process no longer runs on this host;
    every other file stays. Returns the paths removed.
    """
    removed: list[str] = []
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return removed
    for root, dirs, files in os.walk(folder):
        for name in files + dirs:
            if _abandoned(name):
                _remove(os.path.join(root, name))
                removed.append(os.path.join(root, name))
        dirs[:] = [d for d in dirs if not _abandoned(d)] if recursive else []
    return removed


def is_temporary(name: str) -> bool:
    """True for a name that an unfinished atomic write left behind."""
    base = os.path.basename(name)
    return base.startswith(".") and TMP_MARK in base


def numbered_entries(folder: str | os.PathLike | None, pattern: re.Pattern) -> list[tuple[int, str]]:
    """``(number, path)`` of every entry of ``folder`` whose name ``pattern`` matches, newest first.

    ``pattern``'s first group is the number (an epoch, a step). Leftovers of
    unfinished atomic writes are skipped; a missing folder gives ``[]``.
    """
    if not folder or not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = pattern.match(name)
        if match and not is_temporary(name):
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return sorted(found, reverse=True)


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _temporary_name(path: str) -> str:
    folder, base = os.path.split(os.path.abspath(path))
    suffix = _suffix(base)
    stem = base[: len(base) - len(suffix)] if suffix else base
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}{TMP_MARK}{os.getpid()}-", suffix=suffix, dir=folder)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary file name beside ``path``; renames it onto ``path`` on success.

    The temporary name keeps ``path``'s suffix (``.keras``, ``.weights.h5``,
    ``.png`` …) so libraries that check it accept it. On an exception the
    temporary file is removed and ``path`` is untouched.

    Raises:
      ValueError: the destination folder does not exist.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {path!r}: its folder {folder!r} does not exist.")
    _remove_leftovers_of(folder, os.path.basename(os.path.abspath(path)))
    try:
        tmp = _temporary_name(path)
    except OSError as err:
        raise WriteError(path, _reason(err, None, path)) from err
    try:
        os.remove(tmp)  # the writer creates it; some writers refuse an existing file
        try:
            yield tmp
            if not os.path.exists(tmp):
                raise ValueError(f"the writer of {path!r} wrote nothing.")
            _fsync_file(tmp)
            os.replace(tmp, path)
            _fsync_folder(folder)
        except Exception as err:
            if _is_write_failure(err):
                raise WriteError(path, _reason(err, tmp, path)) from err
            raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # NumPy scalars
        return strict_json(value.item())
    return value


def atomic_write_json(path: str | os.PathLike, value: Any) -> None:
    """Writes ``value`` as strict JSON (non-finite floats become ``null``) atomically."""
    atomic_write_text(path, json.dumps(strict_json(value), indent=2, allow_nan=False) + "\n")


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swaps the names ``a`` and ``b`` in one step (Linux ``renameat2``); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return done == 0


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yields a temporary folder beside ``path``; moves it onto ``path`` on success.

    With ``overwrite`` an existing ``path`` is replaced only after the new
    folder is complete: on Linux the two folders swap names in one step
    (``renameat2(RENAME_EXCHANGE)``), elsewhere the old one is renamed aside
    and the new one renamed in; then the old one is removed. On an exception
    the temporary folder is removed and ``path`` is untouched.

    Raises:
      ValueError: ``path`` exists and ``overwrite`` is false, or its parent
        folder does not exist.
    """
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {path!r}: its folder {parent!r} does not exist.")
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"{path!r} exists; pass overwrite=True to replace it.")
    _remove_leftovers_of(parent, base)
    tmp: str | None
    try:
        tmp = tempfile.mkdtemp(prefix=f".{base}{TMP_MARK}{os.getpid()}-", dir=parent)
    except OSError as err:
        raise WriteError(path, _reason(err, None, path)) from err
    written = tmp
    try:
        try:
            yield tmp
            for folder, _, _ in os.walk(tmp, topdown=False):
                _fsync_folder(folder)
            old: str | None = None
            if os.path.exists(path):
                if _exchange(tmp, path):
                    old, tmp = tmp, None  # tmp now names the old version
                else:
                    old = tempfile.mkdtemp(prefix=f".{base}.old{TMP_MARK}{os.getpid()}-", dir=parent)
                    os.rmdir(old)
                    os.replace(path, old)
            if tmp is not None:
                os.replace(tmp, path)
            _fsync_folder(parent)
        except Exception as err:
            if _is_write_failure(err):
                raise WriteError(path, _reason(err, written, path)) from err
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp is not None and os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
