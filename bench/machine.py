"""The machine a benchmark ran on, named the same way by every script in bench/, and a batch clock."""

from __future__ import annotations

import platform

__all__ = ["batch_clock", "cpu_name"]


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def batch_clock():
    """A Keras callback whose ``stamps`` are ``time.perf_counter()`` at the end of each training batch."""
    import time

    import keras

    class BatchClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.stamps: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.stamps.append(time.perf_counter())

    return BatchClock()
