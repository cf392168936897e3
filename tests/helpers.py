"""Helpers shared by several test files (a test file never imports another test file).

- ``cli``/``CliError``: ``tfflows.cli.main`` in this process, its stderr as the error;
- ``run_script``/``TWO_CPUS``: a script in a fresh Python with two logical CPUs;
- ``CLEAN_LOADER``/``run_clean``: a process that loads SavedModels with tfflows and TFP blocked;
- ``write_tiny_idx``: the 8×8 IDX files of a fake Fashion-MNIST (the ``data_dir`` fixture).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY_IDX = "tiny_idx_tfflows"  # not a TFDS name: a lookup outside --data-dir fails at once

__all__ = [
    "CLEAN_LOADER",
    "ROOT",
    "TINY_IDX",
    "TWO_CPUS",
    "CliError",
    "cli",
    "run_clean",
    "run_script",
    "write_tiny_idx",
]


class CliError(Exception):
    """A CLI run that exited non-zero; the message is its stderr, ``code`` its exit status."""

    def __init__(self, stderr: str, code: int = 1) -> None:
        super().__init__(stderr)
        self.code = code


def cli(*argv: str) -> str:
    """Runs ``tfflows ARGV``; returns stdout, or raises ``CliError(stderr)`` on a non-zero exit."""
    from tfflows.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse's own errors, or sys.exit("message")
            if isinstance(exit_.code, str):
                err.write(exit_.code)
            code = exit_.code if isinstance(exit_.code, int) else 1
    text = err.getvalue()
    assert "Traceback" not in text, f"tfflows {' '.join(argv)} printed a traceback:\n{text}"
    if code:
        raise CliError(text, code)
    return out.getvalue()


TWO_CPUS = textwrap.dedent("""
    import json, os, warnings
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    def twins(make, rng, learning_rate):
        keras.utils.set_random_seed(0)
        single = make()
        for v in single.trainable_variables:  # non-zero couplings: every weight gets a gradient
            v.assign(v + 0.05 * rng.standard_normal(v.shape).astype("float32"))
        start = [w.copy() for w in single.get_weights()]
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            mirrored = make()
            mirrored.set_weights(start)
            mirrored.compile(optimizer=keras.optimizers.SGD(learning_rate))
        single.compile(optimizer=keras.optimizers.SGD(learning_rate))
        return single, mirrored, strategy, start
""")


def run_script(script: str) -> dict:
    """Runs ``script`` in a fresh Python (its own logical devices); returns its RESULT line."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "KERAS_BACKEND": "tensorflow",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


CLEAN_LOADER = textwrap.dedent("""
    import importlib.abc, json, os, sys, time
    BLOCKED = ("tfflows", "tensorflow_probability")
    attempts = []

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ImportError(name + " is blocked in this process")
            return None

    sys.meta_path.insert(0, Blocker())
    import numpy as np
    import tensorflow as tf

    root = sys.argv[1]
    for _ in range(3000):  # the parent writes plan.json once every model is exported
        if os.path.exists(root + "/plan.json"):
            break
        time.sleep(0.2)
    plan = json.load(open(root + "/plan.json"))
    report = {"errors": {}, "specs": {}}
    outputs = {}
    for model, spec in plan.items():
        loaded = tf.saved_model.load(spec["path"])
        arrays = np.load(spec["arrays"])
        report["specs"][model] = {
            name: {
                "inputs": {k: [v.dtype.name, v.shape.as_list()]
                           for k, v in fn.structured_input_signature[1].items()},
                "outputs": {k: [v.dtype.name, v.shape.as_list()]
                            for k, v in fn.structured_outputs.items()},
            }
            for name, fn in loaded.signatures.items()
        }
        for rid, (signature, inputs) in spec["requests"].items():
            fn = loaded.signatures[signature]
            try:
                out = fn(**{k: tf.constant(arrays[v]) for k, v in inputs.items()})
            except Exception as err:
                report["errors"][model + "/" + rid] = [type(err).__name__, str(err)[:2000]]
                continue
            for k, v in out.items():
                outputs[model + "/" + rid + "/" + k] = v.numpy()
    report["attempts"] = attempts
    report["loaded_modules"] = sorted(m for m in sys.modules
                                      if m.split(".")[0] in BLOCKED)
    np.savez(root + "/outputs.npz", **outputs)
    json.dump(report, open(root + "/report.json", "w"))
""")


def run_clean(args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PYTHONPATH", None)
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs
    )


def write_tiny_idx(folder: Path) -> Path:
    """Writes 64 train and 32 test 8×8 uint8 images with labels as IDX files into ``folder``."""
    from tfflows.data import IDX_FILE_NAMES
    from tfflows.data.idx import write_idx

    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("test", 32)):
        images_name, labels_name = IDX_FILE_NAMES[split]
        write_idx(folder / images_name, rng.integers(0, 256, (n, 8, 8), dtype=np.uint8))
        write_idx(folder / labels_name, rng.integers(0, 10, n).astype(np.uint8))
    return folder
