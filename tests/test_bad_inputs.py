"""Bad input gets a clear error: one table across the Python API, the CLI and the SavedModel.

Each row is ``id: (call, error type, message substring)``. ``call`` takes the
``Env`` fixture (small shared models, a SavedModel and a temporary folder).
A CLI row runs ``tfflows.cli.main`` in this process; a non-zero exit becomes
``CliError`` with what the command printed to stderr, which must hold the
substring and no traceback.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

import tfflows
from tfflows import data
from tfflows.callbacks import SampleCheck
from tfflows.data.tabular import load_csv
from tfflows.training import make_optimizer

from helpers import CliError, cli


@functools.cache
def _glow() -> tfflows.Glow:
    model = tfflows.Glow((8, 8, 1), num_levels=2, num_steps=1, width=8, num_bits=5)
    model.initialize(np.random.default_rng(0).uniform(0, 32, (16, 8, 8, 1)).astype("float32"))
    return model


@functools.cache
def _vector() -> tfflows.VectorRealNVP:
    return tfflows.VectorRealNVP(2, num_steps=2, width=8)


@functools.cache
def _labelled() -> tfflows.VectorRealNVP:
    return tfflows.VectorRealNVP(2, num_steps=2, width=8, num_classes=3)


@functools.cache
def _saved_model(folder: str) -> Any:
    path = os.path.join(folder, "glow", "1")
    tfflows.export_saved_model(_glow(), path)
    return tf.saved_model.load(path)


class Env:
    """What a row may use: shared small models, one SavedModel, a fresh folder."""

    def __init__(self, tmp: Path, shared: Path) -> None:
        self.tmp = tmp
        self._shared = shared

    glow = staticmethod(_glow)
    vector = staticmethod(_vector)
    labelled = staticmethod(_labelled)

    def saved_model(self) -> Any:
        return _saved_model(str(self._shared))

    def keras_file(self) -> str:
        """A saved, finite ``.keras`` file of the small Glow."""
        path = self._shared / "glow.keras"
        if not path.exists():
            _glow().save(str(path))
        return str(path)


def _images(n: int = 2, value: float = 3.5) -> np.ndarray:
    return np.full((n, 8, 8, 1), value, np.float32)


def _serve(name: str, **inputs) -> Callable[[Env], Any]:
    def call(env: Env):
        fn = env.saved_model().signatures[name]
        return fn(**{k: tf.constant(v) for k, v in inputs.items()})

    return call


Row = tuple[Callable[[Env], Any], Any, str]

# -- models: construction and scoring -----------------------------------------------
MODEL_ROWS: dict[str, Row] = {
    "glow_event_shape_rank2": (lambda e: tfflows.Glow((8, 8)), ValueError, "event_shape"),
    "glow_context_and_classes": (
        lambda e: tfflows.VectorRealNVP(2, num_classes=2, context_dim=2),
        ValueError,
        "not both",
    ),
    "log_prob_wrong_shape": (
        lambda e: e.glow().log_prob(np.zeros((2, 4, 4, 1), "float32")),
        ValueError,
        "expected x of shape",
    ),
    "log_prob_int_pixels_out_of_range": (
        lambda e: e.glow().log_prob(np.full((2, 8, 8, 1), -1, "int32")),
        ValueError,
        "expected x as 8-bit pixels in 0..255",
    ),
    "sample_negative": (lambda e: e.glow().sample(-1), ValueError, "num_samples must be an integer >= 0"),
    "sample_negative_temperature": (
        lambda e: e.glow().sample(2, temperature=-1.0),
        ValueError,
        "temperature must be a finite number",
    ),
    "sample_nan_temperature": (
        lambda e: e.glow().sample(2, temperature=math.nan),
        ValueError,
        "temperature must be a finite number",
    ),
    "decode_wrong_latent_size": (
        lambda e: e.glow().decode(np.zeros((2, 10), "float32")),
        ValueError,
        "expected latents of shape",
    ),
    "context_on_unconditional": (
        lambda e: e.vector().log_prob(np.zeros((2, 2), "float32"), context=[0, 1]),
        ValueError,
        "not conditional",
    ),
    "missing_labels": (
        lambda e: e.labelled().log_prob(np.zeros((2, 2), "float32")),
        ValueError,
        "this model is conditional",
    ),
    "label_out_of_range": (
        lambda e: e.labelled().log_prob(np.zeros((2, 2), "float32"), context=[0, 3]),
        ValueError,
        "0..2",
    ),
    # section 4: empty batches are valid (tests/test_models.py); non-finite inputs, levels out of range
    "sample_fraction": (
        lambda e: e.glow().sample(1.5),
        ValueError,
        "num_samples must be an integer >= 0, got 1.5",
    ),
    "sample_bool": (lambda e: e.glow().sample(True), ValueError, "num_samples must be an integer >= 0"),
    "log_prob_nan": (
        lambda e: e.glow().log_prob(_images(2, math.nan)),
        ValueError,
        "expected finite x, got 128 inf or NaN values",
    ),
    "log_prob_inf_vector": (
        lambda e: e.vector().log_prob(np.array([[math.inf, 0.0]], "float32")),
        ValueError,
        "expected finite x, got 1 inf or NaN",
    ),
    "encode_nan": (lambda e: e.glow().encode(_images(1, math.nan)), ValueError, "expected finite x"),
    "encode_inf_vector": (
        lambda e: e.vector().encode(np.array([[0.0, -math.inf]], "float32")),
        ValueError,
        "expected finite x",
    ),
    "decode_nan_latents": (
        lambda e: e.glow().decode(np.full((1, 64), math.nan, "float32")),
        ValueError,
        "expected finite latents",
    ),
    "decode_inf_vector": (
        lambda e: e.vector().decode(np.array([[math.inf, 0.0]], "float32")),
        ValueError,
        "expected finite latents",
    ),
    "log_prob_level_too_big": (
        lambda e: e.glow().log_prob(_images(2, 32.0)),
        ValueError,
        "pixel levels in [0, 32) for num_bits=5, got values from 32 to 32",
    ),
    "log_prob_level_negative": (
        lambda e: e.glow().log_prob(_images(2, -0.5)),
        ValueError,
        "pixel levels in [0, 32)",
    ),
    "log_prob_8bit_pixels": (
        lambda e: e.glow().log_prob(_images(2, 200.0)),
        ValueError,
        "8-bit pixels given to a model of fewer bits?",
    ),
    "bits_per_dim_level_too_big": (
        lambda e: e.glow().bits_per_dim(_images(1, 40.0)),
        ValueError,
        "pixel levels in [0, 32)",
    ),
    "labelled_log_prob_nan": (
        lambda e: e.labelled().log_prob(np.array([[math.nan, 0.0]], "float32"), context=[1]),
        ValueError,
        "expected finite x",
    ),
}

# -- training, saving and the non-finite guard -----------------------------------------
TRAINING_ROWS: dict[str, Row] = {
    "save_nonfinite_model": (
        lambda e: _nan_copy(e).save(str(e.tmp / "nan.keras")),
        ValueError,
        "non-finite weights",
    ),
    "save_weights_nonfinite_model": (
        lambda e: _nan_copy(e).save_weights(str(e.tmp / "nan.weights.h5")),
        ValueError,
        "non-finite weights",
    ),
    "clipnorm_zero": (lambda e: make_optimizer(1e-3, clipnorm=0.0), ValueError, "clipnorm"),
    "lr_zero": (
        lambda e: make_optimizer(0.0),
        ValueError,
        "learning_rate must be a finite number > 0, got 0.0",
    ),
    "lr_negative": (lambda e: make_optimizer(-1e-3), ValueError, "learning_rate must be a finite number > 0"),
    "lr_nan": (
        lambda e: make_optimizer(math.nan),
        ValueError,
        "learning_rate must be a finite number > 0, got nan",
    ),
    "lr_inf": (
        lambda e: make_optimizer(math.inf),
        ValueError,
        "learning_rate must be a finite number > 0, got inf",
    ),
    "clipnorm_negative": (
        lambda e: make_optimizer(1e-3, clipnorm=-5.0),
        ValueError,
        "clipnorm must be a finite number > 0 or None, got -5.0",
    ),
    "clipnorm_nan": (
        lambda e: make_optimizer(1e-3, clipnorm=math.nan),
        ValueError,
        "clipnorm must be a finite",
    ),
    "clipnorm_inf": (
        lambda e: make_optimizer(1e-3, clipnorm=math.inf),
        ValueError,
        "clipnorm must be a finite",
    ),
    "warmup_negative": (
        lambda e: make_optimizer(1e-3, warmup_steps=-1),
        ValueError,
        "warmup_steps must be a whole number of steps >= 0, got -1",
    ),
    "warmup_nan": (lambda e: make_optimizer(1e-3, warmup_steps=math.nan), ValueError, "warmup_steps must be"),
    "warmup_inf": (lambda e: make_optimizer(1e-3, warmup_steps=math.inf), ValueError, "warmup_steps must be"),
    "decay_negative": (
        lambda e: make_optimizer(1e-3, decay_steps=-10),
        ValueError,
        "decay_steps must be a whole number of steps >= 0, got -10",
    ),
    "decay_fractional": (lambda e: make_optimizer(1e-3, decay_steps=2.5), ValueError, "decay_steps must be"),
    "export_nonfinite_model": (
        lambda e: tfflows.export_saved_model(_nan_copy(e), e.tmp / "nan" / "1"),
        ValueError,
        "refusing to export a model with non-finite weights",
    ),
    "cli_export_nonfinite_model": (
        lambda e: cli("export", _nan_keras_file(e), str(e.tmp / "served")),
        CliError,
        "refusing to export a model with non-finite weights",
    ),
    "cli_train_negative_warmup": (
        lambda e: cli(
            "train",
            "--warmup",
            "-5",
            "--width",
            "8",
            "--steps",
            "1",
            "--epochs",
            "1",
            "--out",
            str(e.tmp / "run"),
        ),
        CliError,
        "argument --warmup: expected an integer >= 0, got -5",
    ),
    "sample_clip_latent_zero": (
        lambda e: e.glow().sample(2, clip_latent=0.0),
        ValueError,
        "clip_latent must be a finite number > 0 or None, got 0.0",
    ),
    "sample_check_zero_samples": (
        lambda e: SampleCheck(0),
        ValueError,
        "num_samples must be a positive integer, got 0",
    ),
}

# -- data --------------------------------------------------------------------------------
DATA_ROWS: dict[str, Row] = {
    "unknown_toy": (lambda e: data.sample_toy("spiral9", 10), ValueError, "spiral9"),
    # section 4: source bits, TFDS names
    "digits_as_8_bit": (
        lambda e: data.make_dataset(data.load_images("digits", "test"), num_bits=5),
        ValueError,
        "they look like 5-bit data; pass source_bits=5",
    ),
    "source_bits_too_few": (
        lambda e: data.make_dataset(np.full((2, 4, 4, 1), 200, np.uint8), num_bits=5, source_bits=7),
        ValueError,
        "got a maximum of 200 (pass source_bits=8",
    ),
    "inferred_bits_below_n_bits": (
        lambda e: data.make_dataset(data.load_images("digits", "test"), num_bits=8, source_bits=None),
        ValueError,
        "num_bits must be in 1..source_bits=5",
    ),
    "make_dataset_batch_size_fraction": (
        lambda e: data.make_dataset(np.full((2, 4, 4, 1), 200, np.uint8), batch_size=2.5),
        ValueError,
        "batch_size must be a positive integer; got 2.5",
    ),
    "tfds_unknown_name": (
        lambda e: data.load_images("no_such_dataset_tfflows"),
        ValueError,
        "TFDS has no dataset 'no_such_dataset_tfflows'",
    ),
    "tfds_offline": (
        lambda e: _offline(lambda: data.load_images("cifar10")),
        ValueError,
        "'cifar10' is not downloaded",
    ),
}


# -- the command line --------------------------------------------------------------------
def _holding(env: Env, folder: str, *names: str, content: bytes = b"x") -> str:
    """``env.tmp/folder`` with each of ``names`` written (parents made); returns the folder."""
    for name in names:
        path = env.tmp / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (env.tmp / folder).mkdir(parents=True, exist_ok=True)
    return str(env.tmp / folder)


def _model_beside(env: Env, results: bytes | None = None, cut: bool = False) -> str:
    """A copy of the small Glow's .keras file (cut in half with ``cut``), with a results.json."""
    whole = Path(env.keras_file()).read_bytes()
    path = env.tmp / "run" / "model.keras"
    _holding(env, "run", "model.keras", content=whole[: len(whole) // 2] if cut else whole)
    if results is not None:
        (env.tmp / "run" / "results.json").write_bytes(results)
    return str(path)


def _tiny_train(env: Env, *argv: str) -> str:
    return cli(
        "train",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--width",
        "8",
        "--steps",
        "1",
        "--verbose",
        "0",
        *argv,
    )


CLI_ROWS: dict[str, Row] = {
    "cli_no_command": (lambda e: cli(), CliError, "required"),
    "cli_bad_lr": (lambda e: cli("train", "--lr", "-1"), CliError, "finite number > 0"),
    "cli_evaluate_missing_model": (
        lambda e: cli("evaluate", str(e.tmp / "none.keras")),
        CliError,
        "no model file",
    ),
    "cli_train_rerun_finished": (
        lambda e: _tiny_train(e, "--out", _holding(e, "out", "results.json", "model.keras")),
        CliError,
        "holds a finished run (results.json, model.keras); pass --resume",
    ),
    "cli_train_rerun_interrupted": (
        lambda e: _tiny_train(e, "--out", _holding(e, "out", "backup/latest.weights.h5")),
        CliError,
        "holds an interrupted run (backup/; no results.json); pass --resume",
    ),
    "cli_train_resume_and_overwrite": (
        lambda e: _tiny_train(e, "--resume", "--overwrite"),
        CliError,
        "not allowed with argument",
    ),
    "cli_train_out_is_a_file": (
        lambda e: _tiny_train(e, "--out", str(Path(_holding(e, "d", "out")) / "out")),
        CliError,
        "is not a folder",
    ),
    "cli_train_missing_data_dir": (
        lambda e: _tiny_train(
            e, "--dataset", "mnist", "--data-dir", str(e.tmp / "nowhere"), "--out", str(e.tmp / "out")
        ),
        CliError,
        "/nowhere' does not exist or is not a folder",
    ),
    "cli_train_data_dir_is_a_file": (
        lambda e: _tiny_train(
            e, "--data-dir", str(Path(_holding(e, "d", "idx")) / "idx"), "--out", str(e.tmp / "out")
        ),
        CliError,
        "is not a folder (expected a folder holding the IDX files of 'digits')",
    ),
    "cli_evaluate_without_dataset": (
        lambda e: cli("evaluate", _model_beside(e)),
        CliError,
        "pass --dataset: there is no results.json",
    ),
    "cli_evaluate_missing_data_dir": (
        lambda e: cli("evaluate", e.keras_file(), "--dataset", "mnist", "--data-dir", str(e.tmp / "nowhere")),
        CliError,
        "does not exist",
    ),
    "cli_evaluate_unreadable_results": (
        lambda e: cli("evaluate", _model_beside(e, results=b'{"dataset": "dig')),
        CliError,
        "results.json' is unreadable",
    ),
    "cli_evaluate_truncated_model": (
        lambda e: cli("evaluate", _model_beside(e, cut=True), "--dataset", "digits"),
        CliError,
        "could not load the model file",
    ),
    "cli_export_into_occupied_folder": (
        lambda e: cli("export", e.keras_file(), _holding(e, "serving", "1/notes.txt")),
        CliError,
        "is not empty; TF Serving versions are immutable",
    ),
    "cli_export_overwrite_foreign_folder": (
        lambda e: cli("export", e.keras_file(), _holding(e, "serving", "1/saved_model.pb"), "--overwrite"),
        CliError,
        "holds no SavedModel written by tfflows",
    ),
    "cli_export_version_is_a_file": (
        lambda e: cli("export", e.keras_file(), _holding(e, "serving", "1")),
        CliError,
        "is not a folder",
    ),
    "cli_sample_into_missing_folder": (
        lambda e: cli("sample", e.keras_file(), "--out", str(e.tmp / "nowhere" / "s.png")),
        CliError,
        "does not exist",
    ),
    # section 4: corrupt and wrong model files, datasets that cannot be had
    "cli_evaluate_garbage_file": (
        lambda e: cli("evaluate", _garbage(e, "x.keras"), "--dataset", "digits"),
        CliError,
        "not a readable .keras model file",
    ),
    "cli_sample_truncated_file": (
        lambda e: cli("sample", _truncated(e), "--out", str(e.tmp / "s.png")),
        CliError,
        "not a readable .keras model file",
    ),
    "cli_export_garbage_file": (
        lambda e: cli("export", _garbage(e, "x.keras"), str(e.tmp / "out")),
        CliError,
        "not a readable .keras model file",
    ),
    "cli_evaluate_folder": (
        lambda e: cli("evaluate", str(e.tmp), "--dataset", "digits"),
        CliError,
        "got the folder",
    ),
    "cli_evaluate_not_keras": (
        lambda e: cli("evaluate", _garbage(e, "model.h5"), "--dataset", "digits"),
        CliError,
        "expected a .keras model file",
    ),
    "cli_evaluate_not_a_flow": (
        lambda e: cli("evaluate", _plain_keras_model(e), "--dataset", "digits"),
        CliError,
        "expected a tfflows flow model",
    ),
    "cli_train_unknown_dataset": (
        lambda e: cli("train", "--dataset", "no_such_dataset_tfflows", "--out", str(e.tmp / "run")),
        CliError,
        "TFDS has no dataset 'no_such_dataset_tfflows'",
    ),
    "cli_train_offline_tfds": (
        lambda e: _offline(lambda: cli("train", "--dataset", "cifar10", "--out", str(e.tmp / "run"))),
        CliError,
        "'cifar10' is not downloaded",
    ),
    # TarFlow's training and sampling options, given where they do nothing
    "cli_train_noise_for_glow": (
        lambda e: _tiny_train(e, "--noise", "gaussian", "--out", str(e.tmp / "out")),
        CliError,
        "--noise is a training option of --model tarflow, got --model glow",
    ),
    "cli_train_noise_std_without_gaussian_noise": (
        lambda e: _tiny_train(e, "--model", "tarflow", "--noise-std", "0.1", "--out", str(e.tmp / "out")),
        CliError,
        "--noise-std is the std of --noise gaussian, got --noise uniform (the default)",
    ),
    "cli_train_label_dropout_unconditional": (
        lambda e: _tiny_train(e, "--model", "tarflow", "--label-dropout", "0.2", "--out", str(e.tmp / "out")),
        CliError,
        "--label-dropout is for class-conditional models (--conditional)",
    ),
    "cli_train_label_dropout_one": (
        lambda e: cli("train", "--model", "tarflow", "--label-dropout", "1"),
        CliError,
        "expected a probability in [0, 1), got 1",
    ),
    "cli_sample_guidance_for_glow": (
        lambda e: cli("sample", e.keras_file(), "--guidance", "1.5", "--out", str(e.tmp / "s.png")),
        CliError,
        "--guidance is for class-conditional TarFlow models (trained with --conditional), "
        "got an unconditional Glow",
    ),
    "cli_sample_denoise_for_glow": (
        lambda e: cli("sample", e.keras_file(), "--denoise", "--out", str(e.tmp / "s.png")),
        CliError,
        "--denoise is for TarFlow models trained with --noise gaussian, got a Glow",
    ),
    "cli_sample_guidance_nan": (
        lambda e: cli("sample", e.keras_file(), "--guidance", "nan"),
        CliError,
        "expected a finite number, got nan",
    ),
}

# -- the SavedModel --------------------------------------------------------------------
SAVEDMODEL_ROWS: dict[str, Row] = {
    "serve_wrong_channels": (
        _serve("log_prob", images=np.zeros((1, 8, 8, 3), np.uint8)),
        tf.errors.InvalidArgumentError,
        "not compatible",
    ),
    "serve_too_many_samples": (
        _serve("sample", num_samples=np.int32(10**6), temperature=np.float32(1), seed=np.int64(0)),
        tf.errors.InvalidArgumentError,
        "num_samples must be in",
    ),
    "serve_nan_temperature": (
        _serve("sample", num_samples=np.int32(2), temperature=np.float32(np.nan), seed=np.int64(0)),
        tf.errors.InvalidArgumentError,
        "temperature must be finite",
    ),
    "serve_nan_latents": (
        _serve("decode", latents=np.full((1, 64), np.nan, np.float32)),
        tf.errors.InvalidArgumentError,
        "latents must be finite",
    ),
    "serve_float_levels_too_big": (
        _serve("log_prob_float", images=_images(1, 40.0)),
        tf.errors.InvalidArgumentError,
        "pixel levels in [0, 32)",
    ),
    "serve_negative_samples": (
        _serve("sample", num_samples=np.int32(-1), temperature=np.float32(1), seed=np.int64(0)),
        tf.errors.InvalidArgumentError,
        "num_samples must be in 0..4096",
    ),
    "serve_negative_temperature": (
        _serve("sample", num_samples=np.int32(2), temperature=np.float32(-0.5), seed=np.int64(0)),
        tf.errors.InvalidArgumentError,
        "temperature must be >= 0",
    ),
    "serve_wrong_size": (
        _serve("log_prob", images=np.zeros((1, 4, 4, 1), np.uint8)),
        tf.errors.InvalidArgumentError,
        "not compatible",
    ),
    "serve_encode_wrong_size": (
        _serve("encode", images=np.zeros((2, 16, 16, 1), np.uint8)),
        tf.errors.InvalidArgumentError,
        "not compatible",
    ),
    "serve_latents_wrong_size": (
        _serve("decode", latents=np.zeros((1, 63), np.float32)),
        tf.errors.InvalidArgumentError,
        "not compatible",
    ),
    "serve_inf_latents": (
        _serve("decode", latents=np.full((1, 64), np.inf, np.float32)),
        tf.errors.InvalidArgumentError,
        "latents must be finite",
    ),
    "serve_negative_float_levels": (
        _serve("log_prob_float", images=_images(1, -1.0)),
        tf.errors.InvalidArgumentError,
        "pixel levels in [0, 32)",
    ),
    "serve_nan_float_levels": (
        _serve("log_prob_float", images=_images(1, np.nan)),
        tf.errors.InvalidArgumentError,
        "pixel levels in [0, 32)",
    ),
}


def _offline(call: Callable[[], Any]) -> Any:
    """Runs ``call`` with the TFDS download host unreachable (a closed local port stands for it)."""
    old = os.environ.get("TFFLOWS_TFDS_PROBE")
    os.environ["TFFLOWS_TFDS_PROBE"] = "127.0.0.1:9"
    try:
        return call()
    finally:
        if old is None:
            del os.environ["TFFLOWS_TFDS_PROBE"]
        else:
            os.environ["TFFLOWS_TFDS_PROBE"] = old


def _garbage(env: Env, name: str) -> str:
    path = env.tmp / name
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return str(path)


def _truncated(env: Env) -> str:
    whole = Path(env.keras_file()).read_bytes()
    path = env.tmp / "truncated.keras"
    path.write_bytes(whole[: len(whole) // 2])
    return str(path)


def _plain_keras_model(env: Env) -> str:
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = env.tmp / "dense.keras"
    model.save(str(path))
    return str(path)


def _nan_copy(env: Env):
    model = tfflows.VectorRealNVP(2, num_steps=2, width=8)
    weight = model.trainable_variables[-1]
    weight.assign(tf.fill(weight.shape, math.nan))
    return model


def _nan_keras_file(env: Env) -> str:
    """A ``.keras`` file with a NaN weight, as a version before the guard could write."""
    import keras

    path = str(env.tmp / "nan.keras")
    keras.Model.save(_nan_copy(env), path)  # past FlowModel.save, which refuses it
    return path


# -- issue 21 -----------------------------------------------------------------------------
def _small_glow() -> tfflows.Glow:
    return tfflows.Glow((8, 8, 1), num_levels=2, num_steps=1, width=8, num_bits=5)


def _levels(n: int = 4) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)


def _typicality_test():
    from tfflows.ood import TypicalityTest

    return TypicalityTest.fit(np.arange(10.0), batch_size=2)


def _nan_glow() -> tfflows.Glow:
    model = _small_glow()
    for weight in model.trainable_variables:
        weight.assign(tf.fill(weight.shape, math.nan))
    return model


def _csv(env: Env, name: str, content: bytes) -> str:
    path = env.tmp / name
    path.write_bytes(content)
    return str(path)


def _rows_csv(n: int, header: bytes = b"a,b") -> bytes:
    return header + b"\n" + b"".join(b"%d,%d\n" % (i, i * i % 7) for i in range(n))


def _train_csv(env: Env, path: str, *argv: str) -> str:
    return _tiny_train(env, "--model", "maf", "--dataset", path, "--out", str(env.tmp / "run"), *argv)


def _holding_lock(env: Env, call: Callable[[str], Any]) -> Any:
    """Runs ``call(folder)`` while this process holds the run lock of ``folder`` (another open file)."""
    from tfflows.runlock import RunLock

    folder = str(env.tmp / "held")
    with RunLock(folder):
        return call(folder)


# Class 2: data-dependent initialisation never stores a non-finite or degenerate statistic.
INIT_ROWS: dict[str, Row] = {
    "init_glow_on_no_images": (
        lambda e: _small_glow().initialize(np.zeros((0, 8, 8, 1), "float32")),
        ValueError,
        "data-dependent initialisation needs at least one example",
    ),
    "init_standardize_on_no_rows": (
        lambda e: tfflows.VectorRealNVP(2, num_steps=2, width=8, standardize=True).initialize(
            np.zeros((0, 2), "float32")
        ),
        ValueError,
        "standardize: data-dependent initialisation needs at least one example, got an "
        "empty batch of shape [0, 2]",
    ),
    "init_standardize_std_overflows": (
        lambda e: tfflows.layers.StandardizeLayer().initialize(tf.constant([[3e38, 0.0], [-3e38, 1.0]])),
        ValueError,
        "gave a non-finite standard deviation for 1 of 2 features/channels (first: index 0)",
    ),
    "init_actnorm_variance_overflows": (
        lambda e: tfflows.layers.ActNormLayer(event_ndims=1).initialize(
            tf.constant([[3e38, 0.0], [-3e38, 1.0]])
        ),
        ValueError,
        "gave a non-finite variance",
    ),
    "init_actnorm_nan_input": (
        lambda e: tfflows.layers.ActNormLayer(event_ndims=1).initialize(tf.constant([[math.nan, 0.0]])),
        ValueError,
        "expected finite inputs, got 1 inf or NaN values",
    ),
    "init_background_zero_epochs": (
        lambda e: tfflows.ood.train_background(_small_glow(), _levels(), epochs=0),
        ValueError,
        "epochs: expected a positive integer, got 0",
    ),
    "init_background_zero_time_limit": (
        lambda e: tfflows.ood.train_background(_small_glow(), _levels(), time_limit=0),
        ValueError,
        "time_limit: expected a finite number of seconds > 0 or None, got 0",
    ),
    "init_background_no_images": (
        lambda e: tfflows.ood.train_background(_small_glow(), np.zeros((0, 8, 8, 1), np.uint8)),
        ValueError,
        "images: expected at least one training image",
    ),
    "init_standardize_inf_input": (
        lambda e: tfflows.layers.StandardizeLayer().initialize(tf.constant([[math.inf, 0.0], [1.0, 2.0]])),
        ValueError,
        "expected finite inputs, got 1 inf or NaN values",
    ),
}

# Class 3: the OOD helpers refuse NaN instead of turning it into an answer.
OOD_ROWS: dict[str, Row] = {
    "ood_is_ood_nan_batch": (
        lambda e: _typicality_test().is_ood([math.nan, math.nan]),
        ValueError,
        "batch_nll: expected NLLs that are numbers, got 2 NaN of 2",
    ),
    "ood_is_ood_one_nan": (
        lambda e: _typicality_test().is_ood([1.0, math.nan]),
        ValueError,
        "got 1 NaN of 2 (the model could not score those examples; first at index 1)",
    ),
    "ood_statistic_nan": (
        lambda e: _typicality_test().statistic([math.nan]),
        ValueError,
        "batch_nll: expected NLLs that are numbers",
    ),
    "ood_statistic_empty": (
        lambda e: _typicality_test().statistic([]),
        ValueError,
        "batch_nll: expected at least one NLL, got none",
    ),
    "ood_is_ood_wrong_size": (lambda e: _typicality_test().is_ood([1.0]), ValueError, "expected 2 NLLs"),
    "ood_flag_rate_nan": (
        lambda e: _typicality_test().flag_rate([1.0, math.nan, 2.0, 3.0]),
        ValueError,
        "nll: expected NLLs that are numbers, got 1 NaN of 4",
    ),
    "ood_typicality_nan_mean": (
        lambda e: tfflows.ood.typicality([1.0, 2.0], math.nan),
        ValueError,
        "train_mean_nll: expected a finite number of nats, got nan",
    ),
    "ood_typicality_inf_mean": (
        lambda e: tfflows.ood.typicality([1.0], math.inf),
        ValueError,
        "train_mean_nll: expected a finite number of nats, got inf",
    ),
    "ood_typicality_text_mean": (
        lambda e: tfflows.ood.typicality([1.0], "abc"),
        ValueError,
        "train_mean_nll: expected a finite number of nats, got 'abc'",
    ),
    "ood_typicality_nan_nll": (
        lambda e: tfflows.ood.typicality([math.nan], 1.0),
        ValueError,
        "nll: expected NLLs that are numbers",
    ),
    "ood_score_nan_train_mean": (
        lambda e: tfflows.ood.score(e.glow(), _levels(2), train_mean_nll=math.nan),
        ValueError,
        "train_mean_nll: expected a finite number of nats, got nan",
    ),
    "ood_score_nan_model": (
        lambda e: tfflows.ood.score(_nan_glow(), _levels(2)),
        ValueError,
        "score is NaN for 2 of 2 images (first: image 0)",
    ),
    "ood_test_nan_mean": (
        lambda e: tfflows.ood.TypicalityTest(math.nan, 1.0, 2, 0.01),
        ValueError,
        "train_mean: expected a finite number of nats, got nan",
    ),
    "ood_test_nan_threshold": (
        lambda e: tfflows.ood.TypicalityTest(1.0, math.nan, 2, 0.01),
        ValueError,
        "threshold: expected a finite number of nats >= 0, got nan",
    ),
    "ood_test_negative_threshold": (
        lambda e: tfflows.ood.TypicalityTest(1.0, -1.0, 2, 0.01),
        ValueError,
        "threshold: expected a finite number of nats >= 0",
    ),
    "ood_test_bool_batch": (
        lambda e: tfflows.ood.TypicalityTest(1.0, 1.0, True, 0.01),
        ValueError,
        "batch_size: expected a positive integer, got True",
    ),
    "ood_test_fpr_nan": (
        lambda e: tfflows.ood.TypicalityTest(1.0, 1.0, 2, math.nan),
        ValueError,
        "fpr: expected a rate in (0, 1), got nan",
    ),
    "ood_fit_no_bootstrap": (
        lambda e: tfflows.ood.TypicalityTest.fit(np.arange(10.0), batch_size=2, num_bootstrap=0),
        ValueError,
        "num_bootstrap: expected a positive integer, got 0",
    ),
    "ood_fit_nan_train": (
        lambda e: tfflows.ood.TypicalityTest.fit([1.0, math.nan], batch_size=2),
        ValueError,
        "train_nll: expected a 1-D array of at least 2 finite NLLs",
    ),
    "ood_evaluate_no_ood_sets": (
        lambda e: tfflows.ood.evaluate(e.glow(), _levels(), {}),
        ValueError,
        "ood_data: expected a dict {name: images} of at least one OOD set, got {}",
    ),
    "ood_evaluate_ood_list": (
        lambda e: tfflows.ood.evaluate(e.glow(), _levels(), [_levels()]),
        ValueError,
        "ood_data: expected a dict {name: images}",
    ),
    "ood_evaluate_empty_in_set": (
        lambda e: tfflows.ood.evaluate(e.glow(), np.zeros((0, 8, 8, 1), np.uint8), {"noise": _levels()}),
        ValueError,
        "in_data: expected at least one image, got none",
    ),
    "ood_evaluate_empty_ood_set": (
        lambda e: tfflows.ood.evaluate(e.glow(), _levels(), {"blank": np.zeros((0, 8, 8, 1), np.uint8)}),
        ValueError,
        "ood_data['blank']: expected at least one image, got none",
    ),
    "ood_evaluate_empty_train_set": (
        lambda e: tfflows.ood.evaluate(
            e.glow(), _levels(), {"noise": _levels()}, train_data=np.zeros((0, 8, 8, 1), np.uint8)
        ),
        ValueError,
        "train_data: expected at least one image, got none",
    ),
    "ood_evaluate_typicality_without_train": (
        lambda e: tfflows.ood.evaluate(e.glow(), _levels(), {"noise": _levels()}, typicality_batch=2),
        ValueError,
        "pass train_data too",
    ),
    "ood_evaluate_typicality_batch_zero": (
        lambda e: tfflows.ood.evaluate(
            e.glow(), _levels(), {"noise": _levels()}, train_data=_levels(), typicality_batch=0
        ),
        ValueError,
        "typicality_batch: expected a positive integer or None, got 0",
    ),
    "ood_max_examples_zero": (
        lambda e: tfflows.ood.load_ood_images("noise", (8, 8, 1), max_examples=0),
        ValueError,
        "max_examples: expected a positive integer or None (all), got 0",
    ),
    "ood_max_examples_negative": (
        lambda e: tfflows.ood.load_ood_images("digits", (8, 8, 1), max_examples=-3),
        ValueError,
        "max_examples: expected a positive integer or None (all), got -3",
    ),
    "ood_max_examples_bool": (
        lambda e: tfflows.ood.load_ood_images("constant", (8, 8, 1), max_examples=True),
        ValueError,
        "max_examples: expected a positive integer or None (all), got True",
    ),
    "cli_score_negative_train_examples": (
        lambda e: cli("score", e.keras_file(), "--ood-dataset", "noise", "--train-examples", "-1"),
        CliError,
        "expected an integer >= 0, got -1",
    ),
}

# Class 4: flags and files that were accepted silently.
FLAG_ROWS: dict[str, Row] = {
    "csv_numeric_first_row": (
        lambda e: _train_csv(e, _csv(e, "n.csv", _rows_csv(20, b"1.5,2"))),
        CliError,
        "expected a header row naming the columns, got the numbers ['1.5', '2'] (a data row?)",
    ),
    "csv_duplicate_columns": (
        lambda e: _train_csv(e, _csv(e, "d.csv", _rows_csv(20, b"a,a"))),
        CliError,
        "expected distinct column names, got ['a'] more than once",
    ),
    "csv_unnamed_column": (
        lambda e: _train_csv(e, _csv(e, "u.csv", _rows_csv(20, b"a, "))),
        CliError,
        "expected a name for every column in the header row, got none for column(s) [2]",
    ),
    "csv_column_asked_twice": (
        lambda e: _train_csv(e, _csv(e, "t.csv", _rows_csv(20)), "--columns", "a,a"),
        CliError,
        "expected each column once in columns, got ['a'] twice",
    ),
    "csv_empty_columns_flag": (
        lambda e: _train_csv(e, _csv(e, "t.csv", _rows_csv(20)), "--columns", ""),
        CliError,
        "expected column names, comma-separated, got ['']",
    ),
    "csv_two_rows": (
        lambda e: _train_csv(e, _csv(e, "two.csv", _rows_csv(2))),
        CliError,
        "expected at least 16 rows for a split with 10 training rows, validation fraction 0.2 and "
        "test fraction 0.2; got 2 rows (0 would train)",
    ),
    "csv_eleven_rows": (
        lambda e: _train_csv(e, _csv(e, "eleven.csv", _rows_csv(11))),
        CliError,
        "got 11 rows (7 would train). Give more rows or smaller fractions.",
    ),
    "csv_latin1_byte": (
        lambda e: _train_csv(e, _csv(e, "latin.csv", _rows_csv(20) + b"caf\xe9,1\n")),
        CliError,
        "latin.csv: expected UTF-8 text, got the byte 0xe9 at byte",
    ),
    "csv_latin1_in_header": (
        lambda e: load_csv(_csv(e, "h.csv", b"r\xe9sum\xe9,b\n1,2\n")),
        ValueError,
        "h.csv: expected UTF-8 text, got the byte 0xe9 at byte 1 (line 1)",
    ),
    "cli_columns_on_image_dataset": (
        lambda e: _tiny_train(e, "--columns", "a,b", "--out", str(e.tmp / "run")),
        CliError,
        "--columns picks columns of a CSV file (--dataset FILE.csv), got --dataset 'digits'",
    ),
    "cli_columns_on_toy": (
        lambda e: _tiny_train(
            e, "--model", "maf", "--dataset", "two_moons", "--columns", "x", "--out", str(e.tmp / "run")
        ),
        CliError,
        "got --dataset 'two_moons', which has none",
    ),
    "cli_worker_index_without_workers": (
        lambda e: _tiny_train(e, "--worker-index", "1", "--out", str(e.tmp / "run")),
        CliError,
        "--worker-index 1 places this process in a cluster, got no cluster: give --workers N",
    ),
    "cli_worker_index_zero_without_workers": (
        lambda e: _tiny_train(e, "--worker-index", "0", "--out", str(e.tmp / "run")),
        CliError,
        "--worker-index 0 places this process in a cluster",
    ),
    "cli_workers_without_hosts": (
        lambda e: _tiny_train(e, "--workers", "2", "--out", str(e.tmp / "run")),
        CliError,
        "multi-worker training needs the cluster: expected worker_hosts",
    ),
    "cli_workers_count_against_hosts": (
        lambda e: _tiny_train(
            e,
            "--workers",
            "3",
            "--worker-index",
            "0",
            "--worker-hosts",
            "localhost:1,localhost:2",
            "--out",
            str(e.tmp / "run"),
        ),
        CliError,
        "workers: expected 2 (the number of worker_hosts",
    ),
    "cli_worker_hosts_repeated": (
        lambda e: _tiny_train(
            e, "--worker-index", "1", "--worker-hosts", "localhost:1,localhost:1", "--out", str(e.tmp / "run")
        ),
        CliError,
        "worker_hosts: expected distinct addresses",
    ),
    "cli_worker_index_past_hosts": (
        lambda e: _tiny_train(
            e, "--worker-index", "2", "--worker-hosts", "localhost:1,localhost:2", "--out", str(e.tmp / "run")
        ),
        CliError,
        "worker_index: expected this worker's place in worker_hosts, 0..1, got 2",
    ),
    "glow_num_classes_bool": (
        lambda e: tfflows.Glow((8, 8, 1), num_classes=True),
        ValueError,
        "num_classes must be a positive integer, got True",
    ),
    "vector_context_dim_bool": (
        lambda e: tfflows.VectorRealNVP(2, context_dim=False),
        ValueError,
        "context_dim must be a positive integer, got False",
    ),
    "glow_num_steps_bool": (
        lambda e: tfflows.Glow((8, 8, 1), num_steps=True),
        ValueError,
        "num_steps must be a positive integer, got True",
    ),
    "sample_temperature_vector_tensor": (
        lambda e: e.glow().sample(2, temperature=tf.constant([0.7])),
        ValueError,
        "temperature must be a finite number >= 0",
    ),
    "sample_temperature_nan_tensor": (
        lambda e: e.glow().sample(2, temperature=tf.constant(math.nan)),
        ValueError,
        "temperature must be a finite number >= 0, got nan",
    ),
}


def _tarflow(**kwargs: Any) -> tfflows.TarFlow:
    options = dict(patch_size=4, num_steps=1, depth=1, width=8, heads=2, num_bits=5)
    return tfflows.TarFlow((8, 8, 1), **{**options, **kwargs})


def _jet(**kwargs: Any) -> tfflows.Jet:
    options = dict(patch_size=4, num_steps=2, depth=1, width=8, heads=2, num_bits=5)
    return tfflows.Jet((8, 8, 1), **{**options, **kwargs})


# New surfaces since the first table: TarFlow and Jet options (bool sizes refused since issue 21).
TRANSFORMER_ROWS: dict[str, Row] = {
    "tarflow_patch_not_dividing": (
        lambda e: _tarflow(patch_size=3),
        ValueError,
        "height and width must be divisible by patch_size = 3, got 8x8",
    ),
    "tarflow_heads_not_dividing": (
        lambda e: _tarflow(width=10, heads=4),
        ValueError,
        "width must be divisible by heads, got width=10 and heads=4",
    ),
    "tarflow_negative_noise_std": (
        lambda e: _tarflow(noise="gaussian", noise_std=-0.1),
        ValueError,
        "noise_std must be a finite number > 0, got -0.1",
    ),
    "tarflow_unknown_noise": (lambda e: _tarflow(noise="pink"), ValueError, "noise must be one of"),
    "tarflow_label_dropout_nan": (
        lambda e: _tarflow(num_classes=3, label_dropout=math.nan),
        ValueError,
        "label_dropout must be in [0, 1), got nan",
    ),
    "tarflow_num_steps_bool": (
        lambda e: _tarflow(num_steps=True),
        ValueError,
        "num_steps must be a positive integer, got True",
    ),
    "tarflow_guidance_nan": (
        lambda e: _tarflow(num_classes=3).sample(2, guidance=math.nan, seed=0),
        ValueError,
        "guidance must be a finite number, got nan",
    ),
    "tarflow_denoise_without_noise": (
        lambda e: _tarflow().sample(2, denoise=True, seed=0),
        ValueError,
        "denoise is for models trained with noise='gaussian'",
    ),
    "jet_no_couplings": (
        lambda e: _jet(num_steps=0),
        ValueError,
        "num_steps must be a positive integer, got 0",
    ),
    "jet_width_bool": (
        lambda e: _jet(width=True, heads=1),
        ValueError,
        "width must be a positive integer, got True",
    ),
    "jet_patch_not_dividing": (lambda e: _jet(patch_size=5), ValueError, "divisible by patch_size = 5"),
}

# Class 5: bad input exits 2 (checked for every CLI row), naming what the user gave.
EXIT_ROWS: dict[str, Row] = {
    "cli_score_missing_model": (
        lambda e: cli("score", str(e.tmp / "none.keras"), "--ood-dataset", "noise"),
        CliError,
        "no model file at",
    ),
    "cli_sample_missing_model": (
        lambda e: cli("sample", str(e.tmp / "none.keras"), "--out", str(e.tmp / "s.png")),
        CliError,
        "no model file at",
    ),
    "cli_export_missing_model": (
        lambda e: cli("export", str(e.tmp / "none.keras"), str(e.tmp / "out")),
        CliError,
        "no model file at",
    ),
    "cli_train_conditional_unlabelled": (
        lambda e: _tiny_train(
            e, "--model", "maf", "--dataset", "two_moons", "--conditional", "--out", str(e.tmp / "run")
        ),
        CliError,
        "--conditional needs labelled data; two_moons has none",
    ),
}

# Class 6: one run per folder.
LOCK_ROWS: dict[str, Row] = {
    "cli_train_into_a_held_folder": (
        lambda e: _holding_lock(e, lambda folder: _tiny_train(e, "--out", folder)),
        CliError,
        f"is in use by another tfflows run: PID {os.getpid()} on host",
    ),
    "cli_train_resume_into_a_held_folder": (
        lambda e: _holding_lock(e, lambda folder: _tiny_train(e, "--resume", "--out", folder)),
        CliError,
        "wait for it to end or choose another --out",
    ),
}


# -- issue 21, tried again (bench/audit_bad_inputs.py): each row a finding of the audit, now fixed --
def _maf(**kwargs: Any) -> tfflows.VectorMAF:
    return tfflows.VectorMAF(2, num_steps=1, width=8, **kwargs)


def _entry(**kwargs: Any):
    from tfflows.models.registry import ModelEntry

    base = dict(name="audit-flow", data_kind="vector", model_class=tfflows.VectorMAF)
    return ModelEntry(**{**base, "build": lambda o: None, "tiny": lambda **c: None, **kwargs})


@functools.cache
def _idf_and_file() -> tuple[Any, bytes]:
    from tfflows.models.registry import get_model

    idf = get_model("idf", "image").tiny()
    images = np.random.default_rng(0).integers(0, 32, (2, 8, 8, 1)).astype(np.uint8)
    return idf, tfflows.codec.compress(idf, images, layout="random_access")


AUDIT_ROWS: dict[str, Row] = {
    # models: arguments and values that are not arrays of numbers
    "glow_event_shape_floats": (
        lambda e: tfflows.Glow((8, 8.5, 1)),
        ValueError,
        "event_shape must be (height, width, channels) or (features,) of positive integers, got (8, 8.5, 1)",
    ),
    "vector_seed_string": (
        lambda e: tfflows.VectorGlow(2, num_steps=1, width=8, seed="x"),
        ValueError,
        "VectorGlow: seed must be an integer, got 'x'",
    ),
    "sample_clip_output_string": (
        lambda e: e.glow().sample(2, clip_output="yes"),
        ValueError,
        "clip_output must be True or False, got 'yes'",
    ),
    "initialize_num_batches_zero": (
        lambda e: e.glow().initialize(_images(2), num_batches=0),
        ValueError,
        "initialize's num_batches must be a positive integer, got 0",
    ),
    "initialize_nan_without_data_init_steps": (
        lambda e: _maf().initialize(np.full((4, 2), math.nan, np.float32)),
        ValueError,
        "initialize got data with inf or NaN values",
    ),
    "initialize_wrong_shape_without_data_init_steps": (
        lambda e: _maf().initialize(np.zeros((4, 7), np.float32)),
        ValueError,
        "expected x of shape [batch, 2], got shape (4, 7)",
    ),
    "log_prob_ragged_list": (
        lambda e: e.vector().log_prob([[0.1, 0.2], [0.3]]),
        ValueError,
        "expected x as an array of numbers of shape [batch, 2], got a list of 2 items with rows of "
        "different lengths",
    ),
    "log_prob_none": (
        lambda e: e.glow().log_prob(None),
        ValueError,
        "expected x as an array of numbers of shape [batch, 8, 8, 1], got None",
    ),
    "decode_object_array": (
        lambda e: e.vector().decode(np.array([[1, "a"]], object)),
        ValueError,
        "expected latents as an array of numbers of shape [batch, 2], got a NumPy array of dtype object",
    ),
    "labels_count_against_batch": (
        lambda e: e.labelled().log_prob(np.zeros((2, 2), "float32"), context=[0, 1, 2]),
        ValueError,
        "expected one context per example, 2 for a batch of 2, got 3",
    ),
    "context_vectors_count_against_batch": (
        lambda e: _maf(context_dim=2).encode(
            np.zeros((2, 2), "float32"), context=np.zeros((3, 2), "float32")
        ),
        ValueError,
        "expected one context per example, 2 for a batch of 2, got 3",
    ),
    # the TFP distribution and bijector
    "distribution_sample_fraction": (
        lambda e: e.vector().distribution.sample(2.5),
        ValueError,
        "sample_shape must be an integer >= 0 or a sequence of them, got 2.5",
    ),
    "distribution_sample_negative": (
        lambda e: e.vector().distribution.sample((-2,)),
        ValueError,
        "sample_shape must be an integer >= 0",
    ),
    "distribution_prob_none": (lambda e: e.vector().distribution.prob(None), ValueError, "got None"),
    "bijector_inverse_nan": (
        lambda e: e.vector().bijector.inverse(np.array([[math.nan, 0.0]], "float32")),
        ValueError,
        "expected finite x, got 1 inf or NaN values",
    ),
    "bijector_event_ndims_beyond_the_input": (
        lambda e: e.vector().bijector.forward_log_det_jacobian(np.zeros((2, 2), "float32"), event_ndims=5),
        ValueError,
        "event_ndims must be at most 2 for an input with 1 batch axes, got 5",
    ),
    # fit's counts and batches (refused before Keras trains)
    "fit_targets_for_a_plain_model": (
        lambda e: _maf().fit(np.zeros((4, 2), "float32"), np.arange(4)),
        ValueError,
        "VectorMAF.fit: this model is not conditional, so it takes no targets or labels, got y of type "
        "ndarray",
    ),
    "evaluate_targets_for_a_plain_model": (
        lambda e: _maf().evaluate(np.zeros((4, 2), "float32"), np.arange(4)),
        ValueError,
        "VectorMAF.evaluate: this model is not conditional",
    ),
    "fit_batch_size_zero": (
        lambda e: _maf().fit(np.zeros((4, 2), "float32"), batch_size=0),
        ValueError,
        "VectorMAF.fit: batch_size must be a positive integer or None, got 0",
    ),
    "fit_steps_per_epoch_zero": (
        lambda e: _maf().fit(np.zeros((4, 2), "float32"), steps_per_epoch=0),
        ValueError,
        "steps_per_epoch must be a positive integer or None, got 0",
    ),
    "fit_empty_array": (
        lambda e: _maf().fit(np.zeros((0, 2), "float32")),
        ValueError,
        "expected at least one training example, got an empty batch of shape [0, 2]",
    ),
    "fit_strings_vector_model": (
        lambda e: _maf().fit(np.full((4, 2), "a")),
        ValueError,
        "the first training batch must be float32 or float64, got string",
    ),
    "evaluate_zero_steps": (
        lambda e: _maf().evaluate(np.zeros((4, 2), "float32"), steps=0),
        ValueError,
        "VectorMAF.evaluate: steps must be a positive integer or None, got 0",
    ),
    # optimizers and callbacks
    "scheduled_adam_negative_lr": (
        lambda e: tfflows.ScheduledAdam(learning_rate=-1.0),
        ValueError,
        "ScheduledAdam: learning_rate must be a finite number > 0, got -1.0",
    ),
    "scheduled_adam_nan_lr": (
        lambda e: tfflows.ScheduledAdam(learning_rate=math.nan),
        ValueError,
        "learning_rate must be a finite number > 0, got nan",
    ),
    "sample_check_temperature_nan": (
        lambda e: SampleCheck(4, temperature=math.nan),
        ValueError,
        "SampleCheck: temperature must be a finite number >= 0, got nan",
    ),
    "sample_grid_no_temperatures": (
        lambda e: _callbacks().SampleGrid(str(e.tmp), temperatures=[]),
        ValueError,
        "SampleGrid: temperatures must be a non-empty list of numbers >= 0, got []",
    ),
    "sample_grid_per_row_zero": (
        lambda e: _callbacks().SampleGrid(str(e.tmp), per_row=0),
        ValueError,
        "SampleGrid: per_row must be a positive integer, got 0",
    ),
    "sample_grid_reversed_range": (
        lambda e: _callbacks().SampleGrid(str(e.tmp), value_range=(1.0, -1.0)),
        ValueError,
        "value_range must be (low, high) with low < high, got (1.0, -1.0)",
    ),
    "time_limit_text": (
        lambda e: _callbacks().TimeLimit("10"),
        ValueError,
        "TimeLimit: seconds must be a finite number > 0, got '10'",
    ),
    "density_array_no_bins": (
        lambda e: _callbacks().density_array(np.zeros((4, 2)), bins=0),
        ValueError,
        "density_array: bins must be a positive integer, got 0",
    ),
    "temperature_label_nan": (
        lambda e: _callbacks().temperature_label(math.nan),
        ValueError,
        "temperature must be a finite number, got nan",
    ),
    # the registry
    "model_entry_build_not_callable": (
        lambda e: _entry(build="glow"),
        ValueError,
        "ModelEntry 'audit-flow': build must be callable, got 'glow'",
    ),
    "model_entry_class_not_a_class": (
        lambda e: _entry(model_class=3),
        ValueError,
        "model_class must be a class, got 3",
    ),
    "register_model_string": (
        lambda e: _registry().register_model("glow"),
        ValueError,
        "register_model: expected a ModelEntry, got str 'glow'",
    ),
    "entries_unknown_kind": (
        lambda e: _registry().entries("audio"),
        ValueError,
        "data_kind must be 'image', 'vector' or None, got 'audio'",
    ),
    # tfflows.data
    "dequantize_negative_pixels": (
        lambda e: data.dequantize(np.full((2, 2), -3, np.int32)),
        ValueError,
        "expected 8-bit pixels in 0..255, got values from -3 to -3",
    ),
    "bin_centres_bits_above_source": (
        lambda e: data.bin_centres(tf.constant(_levels(1)), num_bits=9),
        ValueError,
        "num_bits must be in 1..source_bits=8 (bits can only be dropped); got 9",
    ),
    "make_dataset_fractional_labels": (
        lambda e: data.make_dataset(_levels(2), labels=np.array([0.5, 1.0])),
        ValueError,
        "labels must be class ids (integers >= 0), got float64 values such as [0.5, 1.0]",
    ),
    "load_images_empty_name": (
        lambda e: data.load_images(""),
        ValueError,
        "expected a dataset name such as 'digits' or a TFDS name, got ''",
    ),
    "sample_toy_text_seed": (
        lambda e: data.sample_toy("rings", 4, seed="x"),
        ValueError,
        "seed must be an integer or None; got 'x'",
    ),
    "toy_log_prob_nan_points": (
        lambda e: data.toy_log_prob("8gaussians", np.full((2, 2), math.nan)),
        ValueError,
        "x must hold numbers (no NaN); got 4 NaN",
    ),
    "toy_entropy_of_no_samples": (
        lambda e: data.estimate_toy_entropy("8gaussians", n=0),
        ValueError,
        "n must be a positive integer (samples); got 0",
    ),
    "make_dataset_none": (
        lambda e: data.make_dataset(None),
        ValueError,
        "images must be uint8 of shape [N, H, W, C] (or [N, H, W]); got None",
    ),
    # tfflows.ood
    "likelihood_ratio_shapes": (
        lambda e: tfflows.ood.likelihood_ratio(np.zeros(3), np.zeros(2)),
        ValueError,
        "expected log_prob and background_log_prob of one shape (one value per example), got (3,) and (2,)",
    ),
    "likelihood_ratio_nan": (
        lambda e: tfflows.ood.likelihood_ratio(np.array([math.nan]), np.zeros(1)),
        ValueError,
        "likelihood_ratio: expected log_prob without NaN, got 1 NaN",
    ),
    "ood_score_text_images": (
        lambda e: tfflows.ood.score(e.glow(), np.full((2, 8, 8, 1), "a")),
        ValueError,
        "images: expected uint8 pixels 0..255, got an array of dtype <U1 and shape [2, 8, 8, 1]",
    ),
    "ood_flag_rate_names_the_batch_size": (
        lambda e: _typicality_test().flag_rate([1.0]),
        ValueError,
        "nll: expected at least one batch of the test's batch_size (evaluate's typicality_batch) = 2 "
        "values, got 1",
    ),
    "auroc_text_scores": (
        lambda e: tfflows.ood.auroc(["a"], ["b"]),
        ValueError,
        "in_scores: expected a 1-D array of scores (numbers), got ['a']",
    ),
    "is_ood_text": (
        lambda e: _typicality_test().is_ood(["a", "b"]),
        ValueError,
        "batch_nll: expected a 1-D array of NLLs (numbers), got ['a', 'b']",
    ),
    "typicality_text_mean_number": (
        lambda e: tfflows.ood.typicality([1.0], "1"),
        ValueError,
        "train_mean_nll: expected a finite number of nats, got '1'",
    ),
    "ood_without_absent_class": (
        lambda e: tfflows.ood.load_ood_images("digits:without=-1", (8, 8, 1)),
        ValueError,
        "expected class -1 among the labels",
    ),
    "ood_zero_image_shape": (
        lambda e: tfflows.ood.load_ood_images("constant", (0, 8, 1)),
        ValueError,
        "expected an image shape [H, W, C] of positive sizes, got [0, 8, 1]",
    ),
    "image_score_not_callable": (
        lambda e: tfflows.ood.ImageScore("s", 3, "x"),
        ValueError,
        "ImageScore 's': compute must be callable, got 3",
    ),
    "register_score_text": (
        lambda e: tfflows.ood.register_score("nll"),
        ValueError,
        "register_score: expected an ImageScore, got str 'nll'",
    ),
    "format_table_not_a_table": (
        lambda e: tfflows.ood.format_table({}),
        ValueError,
        "format_table: expected the table of tfflows.ood.evaluate (with 'ood'), got []",
    ),
    # export and the codec
    "export_overwrite_text": (
        lambda e: tfflows.export_saved_model(e.glow(), e.tmp / "1", overwrite="no"),
        ValueError,
        "export_saved_model: overwrite must be True or False, got 'no'",
    ),
    "export_empty_path": (
        lambda e: tfflows.export_saved_model(e.glow(), ""),
        ValueError,
        "expected a path for the version folder, got ''",
    ),
    "export_under_a_file": (
        lambda e: tfflows.export_saved_model(e.glow(), Path(_holding(e, "x", "f")) / "f" / "1"),
        ValueError,
        "is a file, not a folder",
    ),
    "codec_index_bool": (
        lambda e: tfflows.codec.decompress(_idf_and_file()[0], _idf_and_file()[1], index=True),
        ValueError,
        "index must be an integer (an image's place in the file), got True",
    ),
    # the command line
    "cli_train_depth_for_glow": (
        lambda e: _tiny_train(e, "--depth", "2", "--out", str(e.tmp / "run")),
        CliError,
        "expected only options that --model glow on image data takes, got --depth 2, which it does not use",
    ),
    "cli_train_num_bits_on_toy": (
        lambda e: _tiny_train(
            e, "--model", "maf", "--dataset", "two_moons", "--num-bits", "5", "--out", str(e.tmp / "run")
        ),
        CliError,
        "got --num-bits 5, which it does not use",
    ),
    "cli_train_patch_size_on_vector_data": (
        lambda e: _tiny_train(
            e, "--model", "maf", "--dataset", "rings", "--patch-size", "2", "--out", str(e.tmp / "run")
        ),
        CliError,
        "got --patch-size 2, which it does not use",
    ),
    "cli_train_empty_out": (
        lambda e: _tiny_train(e, "--out", ""),
        CliError,
        "--out: expected a folder for the run, got ''",
    ),
    "cli_sample_out_txt": (
        lambda e: cli("sample", e.keras_file(), "--out", str(e.tmp / "s.txt")),
        CliError,
        "expected a picture file name ending in .png, got",
    ),
    "cli_sample_out_is_a_folder": (
        lambda e: cli("sample", e.keras_file(), "--out", str(e.tmp)),
        CliError,
        "expected a picture file name (FILE.png), got the folder",
    ),
    "cli_decompress_a_folder": (
        lambda e: cli("decompress", e.keras_file(), str(e.tmp), "-o", str(e.tmp / "out")),
        CliError,
        "expected a compressed file, got the folder",
    ),
    "cli_evaluate_toy_for_image_model": (
        lambda e: cli("evaluate", e.keras_file(), "--dataset", "two_moons"),
        CliError,
        "expected data of the model's shape (8, 8, 1), got examples of shape (2,) in --dataset 'two_moons'",
    ),
    "cli_workers_columns_on_image_data": (
        lambda e: _tiny_train(
            e,
            "--workers",
            "2",
            "--worker-index",
            "0",
            "--worker-hosts",
            "localhost:1,localhost:2",
            "--columns",
            "a",
            "--out",
            str(e.tmp / "r"),
        ),
        CliError,
        "--columns picks columns of a CSV file (--dataset FILE.csv), got --dataset 'digits'",
    ),
    "cli_worker_hosts_blank_entry": (
        lambda e: _tiny_train(
            e, "--worker-index", "0", "--worker-hosts", "localhost:1, ,localhost:2", "--out", str(e.tmp / "r")
        ),
        CliError,
        "worker_hosts: expected 'host:port' entries, got an empty one at place 1",
    ),
}


def _callbacks():
    import tfflows.callbacks

    return tfflows.callbacks


def _registry():
    from tfflows.models import registry

    return registry


ROWS: dict[str, Row] = {
    **MODEL_ROWS,
    **TRAINING_ROWS,
    **DATA_ROWS,
    **CLI_ROWS,
    **SAVEDMODEL_ROWS,
    **INIT_ROWS,
    **OOD_ROWS,
    **FLAG_ROWS,
    **TRANSFORMER_ROWS,
    **EXIT_ROWS,
    **LOCK_ROWS,
    **AUDIT_ROWS,
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_inputs_shared")


@pytest.mark.parametrize("row", list(ROWS), ids=list(ROWS))
def test_bad_input_gets_a_clear_error(row, tmp_path, shared):
    call, error, substring = ROWS[row]
    with pytest.raises(error) as info:
        call(Env(tmp_path, shared))
    assert substring in str(info.value), f"{row}: message lacks {substring!r}: {info.value}"
    if error is CliError:  # the documented status of bad input (argparse's too)
        assert info.value.code == 2, f"{row}: exit status {info.value.code}, expected 2: {info.value}"


def test_cli_train_refusals_name_the_option(tmp_path):
    """Refusals before any training (moved here from test_cli.py, where each started a Python)."""
    with pytest.raises(
        CliError, match="--model jet is an image flow; use it with image data, got vector data"
    ):
        cli(
            "train", "--model", "jet", "--dataset", "two_moons", "--epochs", "1", "--out", str(tmp_path / "a")
        )
    with pytest.raises(CliError, match="recompute"):
        cli(
            "train",
            "--model",
            "tarflow",
            "--patch-size",
            "4",
            "--steps",
            "1",
            "--epochs",
            "1",
            "--backprop",
            "reversible",
            "--out",
            str(tmp_path / "b"),
        )
    with pytest.raises(CliError) as info:
        cli("train", "--dtype", "float16", "--out", str(tmp_path / "c"))
    assert info.value.code == 2 and "--dtype" in str(info.value) and "mixed_float16" in str(info.value)


def test_the_table_is_large_enough():
    assert len(ROWS) >= 60, f"the bad-input table has {len(ROWS)} rows; the issue asks for 60"
    assert len(AUDIT_ROWS) >= 50, "the findings of bench/audit_bad_inputs.py stay in the table"


# -- issue 21: behaviour behind the rows --------------------------------------------------
def test_data_init_on_constant_images_keeps_scale_one_and_warns():
    """Constant images set ActNorm from zero variance (scale ~1000): other data then scored -3.9e12."""
    from tfflows.layers import DataInitWarning

    model = _small_glow()
    with pytest.warns(
        DataInitWarning,
        match=r"actnorm\w*: data-dependent initialisation found a zero "
        r"variance for 4 of 4 features/channels",
    ):
        model.initialize(np.full((4, 8, 8, 1), 16.0, np.float32))
    for layer in model.flow_layers:
        if layer.needs_data_init:
            assert np.all(np.isfinite(layer.log_scale.numpy()))
            assert np.all(np.abs(layer.log_scale.numpy()) < 3.0), layer.name  # not -0.5 log(1e-6) = 6.9
    bpd = model.bits_per_dim(np.random.default_rng(0).integers(0, 32, (8, 8, 8, 1)).astype(np.float32))
    assert np.all(np.isfinite(bpd)) and np.all(bpd.numpy() < 16.0), bpd  # 5-bit data: about 5 when untrained


def test_standardize_constant_feature_keeps_scale_one_and_warns():
    from tfflows.layers import DataInitWarning

    model = tfflows.VectorRealNVP(2, num_steps=2, width=8, standardize=True)
    x = np.array([[3.0, 1.0], [3.0, 2.0], [3.0, 4.0]], np.float32)
    with pytest.warns(
        DataInitWarning,
        match=r"standardize: .* zero standard deviation for 1 of 2 "
        r"features/channels \(0\)",
    ):
        model.initialize(x)
    layer = next(step for step in model.flow_layers if step.needs_data_init)
    np.testing.assert_allclose(layer.mean.numpy(), x.mean(0), rtol=1e-6)
    assert layer.scale.numpy()[0] == 1.0 and layer.scale.numpy()[1] == pytest.approx(x[:, 1].std(), rel=1e-5)


def test_refused_data_init_stores_nothing():
    layer = tfflows.layers.StandardizeLayer()
    with pytest.raises(ValueError, match="non-finite standard deviation"):
        layer.initialize(tf.constant([[3e38, 0.0], [-3e38, 1.0]]))
    assert not layer.is_initialized
    np.testing.assert_array_equal(layer.mean.numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(layer.scale.numpy(), [1.0, 1.0])


def test_a_refused_model_initialisation_is_all_or_nothing():
    """The second ActNorm refuses NaN inputs (a NaN 1x1 convolution before it): the first is kept."""
    model = _small_glow()
    conv = next(step for step in model.flow_layers if step.name.startswith("conv1x1_l0"))
    for weight in conv.trainable_weights:
        weight.assign(tf.fill(weight.shape, math.nan))
    with pytest.raises(
        ValueError, match=r"actnorm_l1\w*: data-dependent initialisation expected finite inputs"
    ):
        model.initialize(np.random.default_rng(0).uniform(0, 32, (16, 8, 8, 1)).astype("float32"))
    for layer in model.flow_layers:
        if layer.needs_data_init:
            assert not layer.is_initialized, layer.name
            np.testing.assert_array_equal(layer.log_scale.numpy(), 0.0)


def test_typicality_counts_an_unscorable_batch_as_refused_and_inf_as_ood():
    test = _typicality_test()
    assert test.is_ood([math.inf, 4.5]) is True  # probability zero: as far out as can be
    assert test.is_ood([4.5, 4.5]) is False


def test_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _rows_csv(3))
    values, names = load_csv(path, ["a"])
    assert names == ["a"] and values[:, 0].tolist() == [0.0, 1.0, 2.0]


def test_one_column_data_get_a_density_picture():
    """A one-column CSV trained, then crashed drawing the per-epoch density picture."""
    from tfflows.callbacks import samples_picture

    model = tfflows.VectorMAF(1, width=8)
    picture = samples_picture(model, [1.0], seed=0)
    assert picture.shape == (400, 400, 1) and picture.dtype == np.uint8
    assert 0 < np.count_nonzero(picture == 0) < picture.size  # some bars, not all black


def test_a_scalar_tensor_temperature_is_its_number():
    model = _glow()
    by_tensor = model.sample(2, temperature=tf.constant(0.7), seed=3)
    np.testing.assert_array_equal(by_tensor, model.sample(2, temperature=0.7, seed=3))


# -- issue 21 class 5: a failed write names the user's path --------------------------------------
@contextlib.contextmanager
def _file_size_limit(limit: int):
    """A real write failure: files may not grow past ``limit`` bytes (EFBIG), for this process only."""
    import resource
    import signal

    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, handler)


# Export traces every signature before its first write fails: in the full suite.
@pytest.mark.parametrize("command", [pytest.param("export", marks=pytest.mark.slow), "sample", "save"])
def test_a_failed_write_exits_2_and_names_the_destination(tmp_path, shared, command):
    env = Env(tmp_path, shared)
    model_file = env.keras_file()
    target = {
        "export": tmp_path / "serving" / "1",
        "sample": tmp_path / "s.png",
        "save": tmp_path / "m.keras",
    }[command]
    with _file_size_limit(4096):
        if command == "save":
            with pytest.raises(OSError) as info:
                _glow().save(str(target))
            message = str(info.value)
        else:
            argv = (
                ["export", model_file, str(target.parent)]
                if command == "export"
                else ["sample", model_file, "--out", str(target), "--num", "50"]
            )
            with pytest.raises(CliError) as info:
                cli(*argv)
            assert info.value.code == 2, info.value
            message = str(info.value)
    assert f"cannot write {str(target)!r}: " in message, message
    assert ".tmp-" not in message, message
    assert not [p for p in tmp_path.rglob(".*tmp-*")], "the temporary file or folder is removed"


# -- issue 21 class 6: the run lock --------------------------------------------------------------
def _dead_pid() -> int:
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path):
    import json
    import socket

    from tfflows.runlock import LOCK_NAME, RunLock, StaleLockWarning

    folder = tmp_path / "run"
    folder.mkdir()
    pid = _dead_pid()
    (folder / LOCK_NAME).write_text(
        json.dumps(
            {
                "pid": pid,
                "host": socket.gethostname(),
                "started": "2026-12-07 01:02:03 UTC",
                "command": "tfflows train",
            }
        )
    )
    with pytest.warns(
        StaleLockWarning,
        match=rf"took over the lock left by PID {pid} on host .*started "
        r"2026-12-07 01:02:03 UTC .*that process no longer runs",
    ):
        lock = RunLock(folder).__enter__()
    try:
        holder = json.loads((folder / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and lock.held
    finally:
        lock.__exit__(None, None, None)
    assert not (folder / LOCK_NAME).exists()


def test_a_refused_run_leaves_no_folder_and_no_lock(tmp_path, shared):
    out = tmp_path / "new" / "run"
    with pytest.raises(CliError, match="--columns picks columns of a CSV file"):
        _tiny_train(Env(tmp_path, shared), "--columns", "a", "--out", str(out))
    assert not (tmp_path / "new").exists()


def test_the_lock_is_free_again_after_a_held_folder_is_released(tmp_path):
    from tfflows.runlock import FolderInUse, RunLock

    with RunLock(tmp_path / "run"):
        with pytest.raises(FolderInUse, match=f"PID {os.getpid()}"):
            RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run") as again:
        assert again.held


# -- issue 21 class 7: leftovers ------------------------------------------------------------------
def test_remove_leftovers_takes_only_tfflows_leftovers_of_gone_writers(tmp_path):
    from tfflows.io import remove_leftovers

    dead, alive = _dead_pid(), os.getpid()
    ours = [
        f".epoch_003.tmp-{dead}-ab12cd34.keras",
        ".epoch_002.tmp-ab12cd34.keras",
        f"checkpoints/.latest.tmp-{dead}-abcdefgh.weights.h5",
        f".results.tmp-{dead}-zz_00000.json",
    ]
    kept = [
        f".epoch_004.tmp-{alive}-ab12cd34.keras",
        ".notes.tmp-mine",
        "notes.tmp-ab12cd34.keras",
        ".epoch_001.tmp-abc.keras",
        "epoch_001.keras",
        ".hidden",
        f".x.tmp-{dead}-ab12cd34.txt",
    ]
    for name in ours + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    version = tmp_path / f".1.tmp-{dead}-q1w2e3r4"
    version.mkdir()
    (version / "saved_model.pb").write_bytes(b"x")
    removed = remove_leftovers(tmp_path)
    assert sorted(os.path.relpath(p, tmp_path) for p in removed) == sorted(ours + [version.name])
    for name in kept:
        assert (tmp_path / name).exists(), name


# -- issue 21 class 1 (the data contract, the lead's): failing now, flipped when it lands --------
# Issue 21 class 1: values the checks did not see, fixed in the data contract (tfflows.data.DataSpec).


def test_class_label_beyond_int32_is_refused():
    with pytest.raises(ValueError, match=r"0\.\.2"):
        _labelled().log_prob(np.zeros((2, 2), "float32"), context=np.array([0, 2**40], np.int64))


def test_nan_context_vector_is_refused():
    model = tfflows.VectorRealNVP(2, num_steps=2, width=8, context_dim=2)
    with pytest.raises(ValueError, match="context"):
        model.log_prob(np.zeros((1, 2), "float32"), context=np.array([[math.nan, 0.0]], np.float32))


def test_graph_context_checks_refuse_a_missing_context_of_a_conditional_model():
    from tfflows.data import DataSpec

    batch = tf.constant(2)
    assert DataSpec("Flow", (3,)).graph_context_checks(None, batch, "log_prob") == []
    with pytest.raises(ValueError, match="log_prob: a conditional model's checks need its context, got None"):
        DataSpec("Flow", (3,), num_classes=2).graph_context_checks(None, batch, "log_prob")


def test_realnvp_encode_refuses_levels_out_of_range_as_log_prob_does():
    model = tfflows.RealNVP((8, 8, 1), num_levels=1, depth=1, width=8, num_bits=5)
    with pytest.raises(ValueError, match=r"pixel levels in \[0, 32\)"):
        model.encode(_images(1, 40.0))


def test_huge_finite_inputs_are_refused_or_scored_finite():
    x = np.array([[1e30, 0.0]], "float32")
    try:
        log_prob = _vector().log_prob(x)
    except ValueError as err:
        assert "1e+30" in str(err) or "overflow" in str(err), err
    else:
        assert np.all(np.isfinite(log_prob)), f"log_prob of 1e30 is {log_prob} with no flag"


def test_saved_model_log_prob_has_a_finite_output(tmp_path, shared):
    outputs = Env(tmp_path, shared).saved_model().signatures["log_prob"].structured_outputs
    assert "finite" in outputs, sorted(outputs)


def test_an_uncompiled_model_evaluates():
    """``tfflows evaluate`` of a model saved without compile() said "You must call compile()"."""
    loss = tfflows.VectorMAF(2, num_steps=1, width=8).evaluate(np.zeros((4, 2), "float32"), verbose=0)
    assert np.isfinite(loss[0] if isinstance(loss, list) else loss)


def test_an_export_removes_what_a_killed_export_of_another_version_left(tmp_path):
    """A killed export left a hidden ``.1.tmp-PID-XXXXXXXX`` folder (~5 MB) that later exports kept."""
    left = tmp_path / f".1.tmp-{_dead_pid()}-q1w2e3r4"
    left.mkdir()
    (left / "saved_model.pb").write_bytes(b"x")
    mine = tmp_path / ".notes.tmp-mine"  # not a name tfflows writes: kept
    mine.write_bytes(b"x")
    tfflows.export_saved_model(_glow(), tmp_path / "2")
    assert not left.exists() and mine.exists() and (tmp_path / "2" / "saved_model.pb").exists()


def test_predict_warns_of_nan_answers_and_validate_args_refuses_them():
    """In a graph NaN in gives NaN out (no check costs a training step); predict says so."""
    x = np.array([[math.nan, 0.0], [0.0, 0.0]], "float32")
    with pytest.warns(
        RuntimeWarning, match=r"VectorMAF.predict: 1 inf or NaN value\(s\) in the result.*validate_args=True"
    ):
        out = _maf().predict(x, verbose=0)
    assert np.isnan(out[0]) and np.isfinite(out[1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite"):
        _maf(validate_args=True).predict(x, verbose=0)
