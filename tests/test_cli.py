"""The command line as a user meets it: quick help without TensorFlow, one-line errors.

A test about what a new process imports or prints (``--help`` without TensorFlow, the
registration of tfflows' classes for ``load_model``, a saved model evaluated from a fresh
process) starts a fresh Python (``python -m tfflows.cli``); the others run
``tfflows.cli.main`` in this process (``helpers.cli``), where the exit status and stderr
are the same and no TensorFlow import is paid again. The bad-input table
(``test_bad_inputs.py``) covers the messages themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
import zipfile
from pathlib import Path

import pytest

from helpers import CliError, cli

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.cli]
process = pytest.mark.slow  # the test starts a fresh Python

# tfflows.models itself loads its classes lazily (the registry lives there); its modules are heavy.
HEAVY = ("tensorflow", "keras", "tensorflow_probability", "tfflows.models.base")


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **(env or {}),
    }
    command = [sys.executable, "-m", "tfflows.cli", *args]
    return subprocess.run(command, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)


def heavy_imports(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Runs ``python -X importtime -m tfflows.cli ARGS``; returns it and the heavy modules it imported."""
    proc = run(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    return proc, sorted(m for m in HEAVY if m in imported)


@process
def test_importing_the_package_registers_the_models_exports_every_name_but_the_command_starts_lazily():
    """One fresh ``import tfflows``: it loads the models (and so TensorFlow) and exports every name
    of ``__all__``; ``tfflows --help`` in another process imports none of the heavy modules.

    (Merged from two tests that each started a Python to import tfflows.)
    """
    code = (
        "import sys, tfflows; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'tfflows.models') if m in sys.modules)); "
        "from tfflows import Glow, bijectors, export_saved_model; "
        "assert tfflows.Glow is Glow and tfflows.models.Glow is Glow; "
        "missing = [n for n in tfflows.__all__ if not hasattr(tfflows, n)]; "
        "assert not missing, missing; assert set(tfflows.__all__) <= set(dir(tfflows)); "
        "print(bijectors.__name__, tfflows.layers.__name__, callable(tfflows.make_optimizer))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded, exported = proc.stdout.strip().splitlines()
    assert loaded == "['keras', 'tensorflow', 'tfflows.models']"
    assert exported.split() == ["tfflows.bijectors", "tfflows.layers", "True"]
    proc, heavy = heavy_imports("--help")
    assert proc.returncode == 0 and heavy == [], heavy


@pytest.mark.parametrize(
    "args, code, shown",
    [
        (["--help"], 0, "Normalizing flows"),
        (["train", "--help"], 0, "--batch-size"),
        (["evaluate", "--help"], 0, "model_path"),
        (["score", "--help"], 0, "--ood-dataset"),
        (["train", "--epochs", "0"], 2, "expected a positive integer"),
        (["bogus"], 2, "invalid choice"),
    ],
    ids=["help", "train_help", "evaluate_help", "score_help", "bad_epochs", "bad_command"],
)
@process
def test_help_and_argument_errors_need_no_tensorflow(args, code, shown):
    proc, heavy = heavy_imports(*args)
    assert proc.returncode == code
    assert heavy == [], f"tfflows {' '.join(args)} imported {heavy}"
    assert shown in proc.stdout + proc.stderr


@process
def test_import_registers_the_classes_for_load_model(tmp_path):
    """``import tfflows`` (before or after keras), then ``load_model`` finds tfflows' classes."""
    import tfflows  # the file is made here; only loading it needs a fresh process

    path = tmp_path / "v.keras"
    # Compiled with make_optimizer: the save names tfflows' learning-rate schedule too.
    model = tfflows.VectorRealNVP(2, num_steps=2, width=8)
    model.compile(optimizer=tfflows.make_optimizer(1e-3, 10))
    model.save(str(path))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for first in ("keras, tfflows", "tfflows, keras"):  # either import order
        load = f"import {first}; m = keras.models.load_model({str(path)!r}); print(type(m).__name__)"
        proc = subprocess.run(
            [sys.executable, "-c", load], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300
        )
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
        extra = {
            "evaluate": ["--dataset", "digits"],
            "sample": ["--out", str(tmp_path / "s.png")],
            "export": [str(tmp_path / "export")],
        }[command]
        with pytest.raises(CliError) as failed:  # cli() also fails on a traceback in stderr
            cli(command, str(path), *extra)
        stderr = str(failed.value)
        assert failed.value.code == 2, (what, stderr[-3000:])
        lines = [line for line in stderr.splitlines() if line.startswith("tfflows")]
        assert len(lines) == 1 and lines[0].startswith(f"tfflows {command}: "), (what, stderr)
        assert "Traceback" not in stderr and "not a readable .keras model file" in lines[0], what


@process
def test_a_trained_model_evaluates_from_a_fresh_process(trained_run):
    """The lazy package still registers everything a saved, compiled model names.

    The model is the session's trained run (conftest.py), trained by tfflows train in the test
    process: what matters here is the fresh process that evaluates it.
    """
    proc = run("evaluate", str(trained_run / "model.keras"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dataset"] == "digits" and result["examples"] == 297 and result["bits_per_dim"] > 0


def test_debug_env_shows_the_traceback(tmp_path, monkeypatch):
    """With TFFLOWS_DEBUG=1 the error leaves ``main`` whole: Python prints its traceback and exits 1."""
    from tfflows.cli import main

    path = _corrupt_files(tmp_path)["garbage"]
    monkeypatch.setenv("TFFLOWS_DEBUG", "1")  # read by each call of main
    with pytest.raises(Exception) as raised:
        main(["evaluate", str(path), "--dataset", "digits"])
    printed = "".join(traceback.format_exception(raised.value))  # what the interpreter prints
    assert "Traceback" in printed and "not a readable .keras model file" in printed


@pytest.mark.parametrize(
    "model, extra",
    [
        (
            "tarflow",
            [
                "--depth",
                "1",
                "--conditional",
                "--noise",
                "gaussian",
                "--noise-std",
                "0.5",
                "--label-dropout",
                "0.2",
            ],
        ),
        ("jet", ["--patch-size", "2"]),
    ],
    ids=["tarflow", "jet"],
)
@pytest.mark.slow  # trains
def test_train_transformer_flows_on_digits(tmp_path, model, extra):
    out = tmp_path / model
    cli(
        "train",
        "--model",
        model,
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--steps",
        "2",
        "--width",
        "16",
        "--heads",
        "2",
        "--batch-size",
        "16",
        *extra,
        "--out",
        str(out),
        "--verbose",
        "0",
    )  # raises CliError (its stderr) on a non-zero exit
    result = json.loads((out / "results.json").read_text())
    assert result["model"] == {"tarflow": "TarFlow", "jet": "Jet"}[model]
    assert result["epochs_run"] == 1 and 0 < result["test_bits_per_dim"] < 8
    config = json.loads(zipfile.ZipFile(out / "model.keras").read("config.json"))["config"]
    assert config["width"] == 16 and config["heads"] == 2
    if model == "jet":
        assert config["patch_size"] == 2 and config["num_steps"] == 2 and config["depth"] == 1
    else:
        assert config["patch_size"] == 4 and config["num_steps"] == 2 and config["depth"] == 1
        assert config["num_classes"] == 10 and config["label_dropout"] == 0.2
        assert config["noise"] == "gaussian" and config["noise_std"] == 0.5
    options = ["--guidance", "1.5", "--denoise"] if model == "tarflow" else []
    cli("sample", str(out / "model.keras"), "--out", str(tmp_path / "s.png"), "--num", "2", *options)
    assert (tmp_path / "s.png").stat().st_size > 0


@pytest.mark.parametrize("policy,backprop", [("mixed_bfloat16", "reversible"), ("float64", "recompute")])
@pytest.mark.slow  # trains
def test_train_takes_a_dtype_policy_and_a_backprop_mode(tmp_path, policy, backprop):
    out = tmp_path / policy
    cli(
        "train",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--steps",
        "1",
        "--levels",
        "1",
        "--width",
        "8",
        "--batch-size",
        "16",
        "--dtype",
        policy,
        "--backprop",
        backprop,
        "--out",
        str(out),
        "--verbose",
        "0",
    )  # raises CliError (its stderr) on a non-zero exit
    result = json.loads((out / "results.json").read_text())
    assert 0 < result["test_bits_per_dim"] < 8
    config = json.loads(zipfile.ZipFile(out / "model.keras").read("config.json"))["config"]
    assert config["dtype"]["config"]["name"] == policy
    assert config["backprop"] == backprop
