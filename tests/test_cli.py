"""The command line as a user meets it: quick help without TensorFlow, one-line errors.

Each test starts a fresh Python (``python -m tfflows.cli``), since what
matters is what a new process imports and prints. The bad-input table
(``test_bad_inputs.py``) covers the messages themselves in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs the command line in this process after noting which heavy modules it imported.
PROBE = """
import json, sys
from tfflows.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
heavy = sorted(m for m in ("tensorflow", "keras", "tensorflow_probability", "tfflows.models")
               if m in sys.modules)
print("PROBE " + json.dumps({"code": code, "heavy": heavy}))
"""


def run(*args: str, env: dict | None = None, probe: bool = False) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    command = [sys.executable, "-c", PROBE, *args] if probe else [sys.executable, "-m", "tfflows.cli", *args]
    return subprocess.run(command, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)


def probed(proc: subprocess.CompletedProcess) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("PROBE "):])


def test_importing_the_cli_and_the_package_imports_no_tensorflow():
    code = ("import sys, tfflows, tfflows.cli; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tfflows.models') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("args, code, shown", [
    (["--help"], 0, "Normalizing flows"),
    (["train", "--help"], 0, "--batch-size"),
    (["evaluate", "--help"], 0, "model_path"),
    (["train", "--epochs", "0"], 2, "expected a positive integer"),
    (["bogus"], 2, "invalid choice"),
], ids=["help", "train_help", "evaluate_help", "bad_epochs", "bad_command"])
def test_help_and_argument_errors_need_no_tensorflow(args, code, shown):
    proc = run(*args, probe=True)
    out = probed(proc)
    assert out["code"] == code
    assert out["heavy"] == [], f"tfflows {' '.join(args)} imported {out['heavy']}"
    assert shown in proc.stdout + proc.stderr


def test_the_package_still_exports_every_name():
    code = ("import tfflows; from tfflows import Glow, bijectors, export_saved_model; "
            "assert tfflows.Glow is Glow and tfflows.models.Glow is Glow; "
            "missing = [n for n in tfflows.__all__ if not hasattr(tfflows, n)]; "
            "assert not missing, missing; assert set(tfflows.__all__) <= set(dir(tfflows)); "
            "print(bijectors.__name__, tfflows.layers.__name__, callable(tfflows.make_optimizer))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["tfflows.bijectors", "tfflows.layers", "True"]


def test_import_after_keras_registers_the_classes_for_load_model(tmp_path):
    """``import keras, tfflows`` then ``load_model`` finds tfflows' classes, as before."""
    path = tmp_path / "v.keras"
    # Compiled with make_optimizer: the save names tfflows' learning-rate schedule too.
    make = ("import tfflows; m = tfflows.VectorRealNVP(2, num_layers=2, hidden_units=8); "
            "m.compile(optimizer=tfflows.make_optimizer(1e-3, 10)); m.save(%r)" % str(path))
    load = ("import keras, tfflows; m = keras.models.load_model(%r); print(type(m).__name__)" % str(path))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for code in (make, load):
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "VectorRealNVP"


def _corrupt_files(folder: Path) -> dict[str, Path]:
    garbage = folder / "garbage.keras"
    garbage.write_bytes(os.urandom(2048))
    truncated = folder / "truncated.keras"
    with zipfile.ZipFile(folder / "whole.zip", "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Glow"}) * 200)
        archive.writestr("model.weights.h5", os.urandom(20000))
    data = (folder / "whole.zip").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return {"garbage": garbage, "truncated": truncated}


@pytest.mark.parametrize("command", ["evaluate", "sample", "export"])
def test_corrupt_model_files_give_one_line_and_a_nonzero_exit(tmp_path, command):
    for what, path in _corrupt_files(tmp_path).items():
        extra = {"evaluate": ["--dataset", "digits"], "sample": ["--out", str(tmp_path / "s.png")],
                 "export": [str(tmp_path / "export")]}[command]
        proc = run(command, str(path), *extra)
        assert proc.returncode == 2, (what, proc.stderr[-3000:])
        lines = [line for line in proc.stderr.splitlines() if line.startswith("tfflows")]
        assert len(lines) == 1 and lines[0].startswith(f"tfflows {command}: "), (what, proc.stderr)
        assert "Traceback" not in proc.stderr and "not a readable .keras model file" in lines[0], what


def test_a_trained_model_evaluates_from_a_fresh_process(tmp_path):
    """The lazy package still registers everything a saved, compiled model names."""
    out = tmp_path / "run"
    train = run("train", "--epochs", "1", "--max-train", "64", "--levels", "1", "--steps", "1",
                "--width", "8", "--out", str(out), "--verbose", "0")
    assert train.returncode == 0, train.stderr[-3000:]
    proc = run("evaluate", str(out / "model.keras"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dataset"] == "digits" and result["examples"] == 297 and result["bits_per_dim"] > 0


def test_debug_env_shows_the_traceback(tmp_path):
    path = _corrupt_files(tmp_path)["garbage"]
    proc = run("evaluate", str(path), "--dataset", "digits", env={"TFFLOWS_DEBUG": "1"})
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "not a readable .keras model file" in proc.stderr
