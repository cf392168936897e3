"""Peak memory of the gradient pass alone (loss and gradients under a tape, eagerly) per backprop mode.

Glow L=3, 64 hidden channels, 32×32×3; one process per call::

    MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=65536 python bench/memory_gradients.py MODE BATCH K

Prints the resident set before the measured pass, its growth after the
forward pass (what the tape keeps) and the peak during forward and backward
(VmHWM reset through /proc/self/clear_refs), in MiB. ``bench/memory.py``
measures the whole training step, optimizer update included.
"""

import ctypes
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np
import tensorflow as tf

import tfflows

mode, batch, K = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


def status_mib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024


def rss():
    return status_mib("VmRSS")


def hwm():
    return status_mib("VmHWM")


m = tfflows.Glow((32, 32, 3), num_levels=3, num_steps=K, width=64, backprop=mode)
rng = np.random.default_rng(0)
x = tf.constant((rng.integers(0, 256, (batch, 32, 32, 3)) + rng.random((batch, 32, 32, 3))).astype("float32"))
m.initialize(x)


def once():
    with tf.GradientTape() as t:
        loss = -tf.reduce_mean(m.log_prob(x))
        mid = rss()
    g = t.gradient(loss, m.trainable_variables)
    return mid, g


once()
ctypes.CDLL("libc.so.6").malloc_trim(0)
b = rss()
open("/proc/self/clear_refs", "w").write("5")
mid, g = once()
print(
    mode, "before", round(b, 1), "after forward", round(mid - b, 1), "peak", round(hwm() - b, 1), flush=True
)
