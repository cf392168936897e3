"""Atomic writes: every file tfflows writes is either the old complete one or the new one.

A writer gets a temporary name in the destination's own folder (so the final
``os.replace`` is a rename on one file system, which POSIX makes atomic),
writes there, flushes it to disk, and renames it into place. Killed at any
moment, by SIGTERM or SIGKILL, the folder holds the old file or the new one,
plus at worst a hidden ``.*.tmp-*`` leftover that readers ignore.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from typing import Any, Iterator

__all__ = [
    "TMP_MARK",
    "atomic_dir",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "is_temporary",
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


def is_temporary(name: str) -> bool:
    """True for a name that an unfinished atomic write left behind."""
    base = os.path.basename(name)
    return base.startswith(".") and TMP_MARK in base


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
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}{TMP_MARK}", suffix=suffix, dir=folder)
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
    tmp = _temporary_name(path)
    try:
        os.remove(tmp)  # the writer creates it; some writers refuse an existing file
        yield tmp
        if not os.path.exists(tmp):
            raise ValueError(f"the writer of {path!r} wrote nothing.")
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_folder(folder)
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


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yields a temporary folder beside ``path``; moves it onto ``path`` on success.

    With ``overwrite`` an existing ``path`` is replaced only after the new
    folder is complete: it is renamed aside, the new one renamed in, and
    then the old one removed. On an exception the temporary folder is
    removed and ``path`` is untouched.

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
    tmp = tempfile.mkdtemp(prefix=f".{base}{TMP_MARK}", dir=parent)
    try:
        yield tmp
        _fsync_folder(tmp)
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{base}.old{TMP_MARK}", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_folder(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
