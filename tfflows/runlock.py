"""One run per folder: an OS lock on ``--out`` held for a training run's lifetime.

``tfflows train`` (the chief, in a multi-worker run) holds :class:`RunLock` on
its ``--out`` folder from before it looks at what the folder holds until it
has written its results. The lock is ``fcntl.flock`` on the file
``.tfflows.lock`` in the folder, so the kernel releases it when the process
ends, however it ends; the file also names the holder (PID, host, start time,
command) for the refusal a second run gets. A file naming a holder whose lock
is free was left by a run that was killed: the next run takes the folder over
with a :class:`StaleLockWarning` saying whose it was.

``flock`` is per host on network file systems that do not forward it; runs on
different hosts sharing a folder are told apart by the host in the file only
when the lock is held on the same host.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import warnings
from typing import Any

from tfflows.io import WriteError, pid_alive

__all__ = ["LOCK_NAME", "FolderInUse", "RunLock", "StaleLockWarning"]

LOCK_NAME = ".tfflows.lock"
"""The lock file in a run folder."""


class FolderInUse(ValueError):
    """Another live run holds the folder's lock (a ValueError: the CLI reports it as bad input, exit 2)."""


class StaleLockWarning(UserWarning):
    """A lock file left by a run that no longer runs was taken over."""


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a run that has not written its details yet"
    command = holder.get("command")
    return f"PID {holder.get('pid')} on host {holder.get('host')!r}, started {holder.get('started')}" + (
        f" ({command})" if command else ""
    )


class RunLock:
    """The exclusive lock of one run folder; use as a context manager or with acquire/release.

    Args:
      folder: the run folder; made if missing (and removed again on release
        when the run left it empty).
      what: how messages name the folder (``"--out"`` for the CLI).

    Raises (on acquire):
      FolderInUse: another live process holds the lock; the message names it.
      ValueError: ``folder`` exists and is not a folder.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "--out") -> None:
        self.given = os.fspath(folder)
        self.folder = os.path.abspath(self.given)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.what = what
        self._fd: int | None = None
        self._made: list[str] = []  # the folders acquire made, innermost first

    @property
    def held(self) -> bool:
        """Whether this object holds the folder's lock now."""
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Takes the folder's lock (a stale one with a warning); returns self.

        Raises:
          FolderInUse: another live process holds it (the message names the holder).
          ValueError: the folder exists and is not a folder.
        """
        if self._fd is not None:
            return self
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise ValueError(f"{self.what} {self.given!r} is not a folder.")
        missing, folder = [], self.folder
        while not os.path.exists(folder):
            missing.append(folder)
            folder = os.path.dirname(folder)
        try:
            os.makedirs(self.folder, exist_ok=True)
            self._made = missing
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            self._release_folder()
            reason = f"{err.strerror or err} (making its lock file {LOCK_NAME})"
            raise WriteError(self.given, reason) from None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                self._release_folder()
                raise FolderInUse(
                    f"{self.what} {self.given!r} is in use by another tfflows run: "
                    f"{_describe(self._read(self.path))}; wait for it to end or choose another "
                    f"{self.what}."
                ) from None
            # The holder before us may have removed the file between our open and our lock:
            # then we locked a name no longer in the folder, and must lock the current one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._fd = fd
        previous = self._read_fd(fd)
        if previous:
            self._warn_stale(previous)
        self._write(fd)
        return self

    def release(self) -> None:
        """Removes the lock file and unlocks; does nothing when not held."""
        if self._fd is None:
            return
        try:
            os.remove(self.path)  # while still locked: a waiter re-checks the name (see acquire)
        except OSError:
            pass
        os.close(self._fd)  # the kernel drops the flock with the last descriptor
        self._fd = None
        self._release_folder()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- the holder's details ------------------------------------------------------

    def _release_folder(self) -> None:
        for folder in self._made:  # only empty ones: the run failed before writing
            try:
                os.rmdir(folder)
            except OSError:
                break
        self._made = []

    def _warn_stale(self, previous: dict[str, Any]) -> None:
        pid = previous.get("pid")
        host = previous.get("host")
        here = socket.gethostname()
        if host == here and isinstance(pid, int) and pid_alive(pid) and pid != os.getpid():
            why = f"PID {pid} runs but does not hold the lock (a reused PID)"
        elif host == here or host is None:
            why = "that process no longer runs"
        else:
            why = f"its lock is free here on {here!r}"
        warnings.warn(
            f"{self.what} {self.given!r}: took over the lock left by {_describe(previous)}: {why} (killed?).",
            StaleLockWarning,
            stacklevel=3,
        )

    @staticmethod
    def _read(path: str) -> dict[str, Any]:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            return {}
        return RunLock._parse(text)

    @staticmethod
    def _read_fd(fd: int) -> dict[str, Any]:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return RunLock._parse(b"".join(chunks).decode("utf-8", errors="replace"))

    @staticmethod
    def _parse(text: str) -> dict[str, Any]:
        if not text.strip():
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            return {"pid": None, "host": None, "started": None, "command": f"unreadable: {text[:60]!r}"}
        return value if isinstance(value, dict) else {}

    def _write(self, fd: int) -> None:
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])[:300] if sys.argv else None,
        }
        data = (json.dumps(holder) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.fsync(fd)
