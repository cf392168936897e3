"""TensorFlow's C++ start-up messages, kept off the command's stderr unless the user asks for them.

TensorFlow 2.21 writes its first messages (oneDNN, the CUDA stubs) through
Abseil before Abseil's logging is initialised, and those ignore
``TF_CPP_MIN_LOG_LEVEL``. So the command, unless the user set that variable,
sets it to 2 (warnings and errors only) and imports TensorFlow and
initialises its devices with the process's stderr (file descriptor 2) sent
to a temporary file; afterwards it writes back every line that is not one
of the known start-up messages (:data:`START_UP_NOISE`), so a real error
still shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

__all__ = [
    "LOG_LEVEL_ENV",
    "NO_DRIVER",
    "NO_DRIVER_ERROR",
    "START_UP_NOISE",
    "import_tensorflow_quietly",
    "native_stderr_filtered",
]

LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"

START_UP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:. ]+\d+ [\w.]+:\d+\] "  # Abseil's info and warning lines
    r"|To enable the following instructions: )"
)  # cpu_feature_guard's second line
"""The start-up lines that :func:`native_stderr_filtered` drops (one regular expression per line)."""

NO_DRIVER = re.compile(r"^I\d{4} .*Could not find cuda drivers")
NO_DRIVER_ERROR = re.compile(r"^E\d{4} [\d:. ]+\d+ cuda_\w+\.cc:\d+\] failed call to cuInit")
"""cuInit's error line is dropped too when TensorFlow said first that the machine has no CUDA
driver (a CPU machine); with a driver it is a real error and shows."""


@contextlib.contextmanager
def native_stderr_filtered(pattern: re.Pattern = START_UP_NOISE) -> Iterator[None]:
    """Sends file descriptor 2 to a temporary file; writes back the lines ``pattern`` does not match.

    C++ libraries write to the descriptor, not to ``sys.stderr``, so only a
    redirection of the descriptor catches them. Python's own output in the
    block (warnings, a traceback's print) is kept, in order, as are all
    lines when the block raises.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", errors="replace")
            lines = text.splitlines(keepends=True)
            no_driver = any(NO_DRIVER.match(line) for line in lines)
            kept = [
                line
                for line in lines
                if failed or not (pattern.match(line) or (no_driver and NO_DRIVER_ERROR.match(line)))
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and starts its devices, without the start-up noise unless the user set the level.

    With ``TF_CPP_MIN_LOG_LEVEL`` set by the user nothing is filtered: they
    asked for TensorFlow's own logging.
    """
    if LOG_LEVEL_ENV in os.environ:
        import tensorflow as tf

        tf.config.list_logical_devices()
        return
    os.environ[LOG_LEVEL_ENV] = "2"
    with native_stderr_filtered():
        import tensorflow as tf

        tf.config.list_logical_devices()  # starts the devices: the cuInit line comes now
