"""Helpers shared by several test files (a test file never imports another test file).

- ``cli``/``CliError``: ``tfflows.cli.main`` in this process, its stderr as the error;
- ``run_script``/``TWO_CPUS``: a script in a fresh Python with two logical CPUs;
- ``CLEAN_LOADER``/``run_clean``: a process that loads SavedModels with tfflows and TFP blocked;
- ``write_tiny_idx``: the 8×8 IDX files of a fake Fashion-MNIST (the ``data_dir`` fixture);
- ``registered_models``/``TinyModel``/``derived``/``inverts_in_one_pass``: the one list of models
  the per-feature test files draw from (the model registry's tiny entries).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY_IDX = "tiny_idx_tfflows"  # not a TFDS name: a lookup outside --data-dir fails at once

__all__ = [
    "CLEAN_LOADER",
    "CONDITIONED",
    "CONTEXT_DIM",
    "NUM_CLASSES",
    "ROOT",
    "TINY_IDX",
    "TWO_CPUS",
    "CliError",
    "TinyModel",
    "cli",
    "derived",
    "inverts_in_one_pass",
    "registered_models",
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
    parent = os.getppid()
    # The parent writes plan.json once every model is exported, however long that takes on a
    # busy machine (a fixed wait failed there); if the parent is gone, nothing will come.
    while not os.path.exists(root + "/plan.json"):
        if os.getppid() != parent:
            sys.exit("the test process exited before writing plan.json")
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


# -- the registered models: one list for every file that runs a feature over "every model" ----------

NUM_CLASSES = 3
"""Classes of a class-conditional tiny model (labels 0..2)."""
CONTEXT_DIM = 2
"""Width of a context-conditional tiny model's context vector."""
CONDITIONED = ("num_classes", "context_dim")
"""Both conditionings: ``registered_models(conditioning=CONDITIONED)`` gives the conditional variants."""


@dataclasses.dataclass(frozen=True)
class TinyModel:
    """A registered model's tiny configuration with one conditioning; calling it builds the model.

    Keyword arguments of the call (``dtype=``, ``backprop=``, ...) go to the entry's ``tiny``.
    """

    entry: Any  # tfflows.models.registry.ModelEntry (this module imports no tfflows at load)
    conditioning: Mapping[str, int]

    @property
    def data_kind(self) -> str:
        """``"image"`` or ``"vector"``."""
        return self.entry.data_kind

    def __call__(self, **kwargs: Any) -> Any:
        return self.entry.tiny(**self.conditioning, **kwargs)


def registered_models(
    kind: str | None = None,
    conditioning: Iterable[str | None] = (None,),
    *,
    first_per_kind: bool = False,
    flow_models_only: bool = True,
    library_only: bool = True,
) -> dict[str, TinyModel]:
    """The registry's tiny models, by id: ``"<name>-<kind>"`` and ``"<name>-<kind>-<conditioning>"``.

    The one source of "every model" for the test files: a model registered in
    :mod:`tfflows.models.registry` (with its ``tiny`` builder) is picked up by
    every file that draws from here, without editing them. Ids are sorted
    (data kind, then name), so they do not depend on import order.

    Args:
      kind: ``"image"`` or ``"vector"`` for one kind of data; None for both.
      conditioning: which variants of each entry: None (unconditional),
        ``"num_classes"`` (:data:`NUM_CLASSES` classes), ``"context_dim"``
        (:data:`CONTEXT_DIM` features); a conditioning the entry does not take is skipped.
      first_per_kind: only the first entry (sorted by name) of each data kind. A file
        whose test per model is expensive (it trains or exports) takes every model
        unconditioned and the conditional variants of one model per kind this way.
      flow_models_only: only entries whose ``model_class`` is a :class:`tfflows.FlowModel`
        (the codec's integer flow is a model of another contract, with its own tests).
      library_only: only tfflows' own entries (their class defined in tfflows). A test
        module that registers a model (the toy of ``test_model_contract.py``) does so at
        import, so a file collected before it would see another list; such models get
        their coverage (contract, CLI, export) in the file that registers them, which
        passes ``library_only=False``.
    """
    import tfflows
    from tfflows.models import registry

    wanted = tuple(conditioning)
    unknown = set(wanted) - {None, *CONDITIONED}
    if unknown:
        raise ValueError(f"registered_models: conditioning may hold None, {CONDITIONED}, got {unknown}.")
    chosen = sorted(
        (
            e
            for e in registry.entries(kind)
            if not (flow_models_only and not issubclass(e.model_class, tfflows.FlowModel))
            and not (library_only and not e.model_class.__module__.startswith("tfflows."))
        ),
        key=lambda e: (e.data_kind, e.name),
    )
    if first_per_kind:
        chosen = [e for i, e in enumerate(chosen) if i == 0 or chosen[i - 1].data_kind != e.data_kind]
    values = {"num_classes": NUM_CLASSES, "context_dim": CONTEXT_DIM}
    out = {}
    for entry in chosen:
        for which in wanted:
            if which is None:
                out[f"{entry.name}-{entry.data_kind}"] = TinyModel(entry, {})
            elif which in entry.conditioning:
                out[f"{entry.name}-{entry.data_kind}-{which}"] = TinyModel(entry, {which: values[which]})
    return out


def derived(make: Any, **changes: Any) -> Any:
    """A model of ``make()``'s class and configuration with ``changes`` to its config.

    For a feature a tiny entry cannot show (an additive coupling, 8-bit pixels, a 2-D
    event): ``from_config({**get_config(), **changes})``, so the variant stays the
    registered model in every other respect.
    """
    model = make()
    unknown = set(changes) - set(model.get_config())
    if unknown:
        raise ValueError(f"derived: {type(model).__name__}'s config has no {sorted(unknown)}.")
    return type(model).from_config({**model.get_config(), **changes})


def inverts_in_one_pass(model: Any) -> bool:
    """False when a step of ``model`` inverts one feature or token at a time
    (``FlowLayer.sequential_inverse``: MAF, TarFlow); ``backprop="reversible"`` refuses those."""
    return not any(getattr(layer, "sequential_inverse", False) for layer in model.flow_layers)
