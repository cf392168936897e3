"""Bad input gets a clear error: one table across the Python API, the CLI and the SavedModel.

Each row is ``id: (call, error type, message substring)``. ``call`` takes the
``Env`` fixture (small shared models, a SavedModel and a temporary folder).
A CLI row runs ``tfflows.cli.main`` in this process; a non-zero exit becomes
``CliError`` with what the command printed to stderr, which must hold the
substring and no traceback.
"""

from __future__ import annotations

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
from tfflows.training import make_optimizer

from helpers import CliError, cli


@functools.cache
def _glow() -> tfflows.Glow:
    model = tfflows.Glow((8, 8, 1), num_levels=2, num_steps=1, hidden_channels=8, num_bits=5)
    model.initialize(np.random.default_rng(0).uniform(0, 32, (16, 8, 8, 1)).astype("float32"))
    return model


@functools.cache
def _vector() -> tfflows.VectorRealNVP:
    return tfflows.VectorRealNVP(2, num_layers=2, hidden_units=8)


@functools.cache
def _labelled() -> tfflows.VectorRealNVP:
    return tfflows.VectorRealNVP(2, num_layers=2, hidden_units=8, num_classes=3)


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
        lambda e: tfflows.VectorRealNVP(2, num_classes=2, context_dim=2), ValueError, "not both"),
    "log_prob_wrong_shape": (lambda e: e.glow().log_prob(np.zeros((2, 4, 4, 1), "float32")),
                             ValueError, "expected x of shape"),
    "log_prob_int_pixels_out_of_range": (lambda e: e.glow().log_prob(np.full((2, 8, 8, 1), -1, "int32")),
                                         ValueError, "expected x as 8-bit pixels in 0..255"),
    "sample_negative": (lambda e: e.glow().sample(-1), ValueError, "num_samples must be an integer >= 0"),
    "sample_negative_temperature": (lambda e: e.glow().sample(2, temperature=-1.0), ValueError,
                                    "temperature must be a finite number"),
    "sample_nan_temperature": (lambda e: e.glow().sample(2, temperature=math.nan), ValueError,
                               "temperature must be a finite number"),
    "decode_wrong_latent_size": (lambda e: e.glow().decode(np.zeros((2, 10), "float32")), ValueError,
                                 "expected latents of shape"),
    "context_on_unconditional": (lambda e: e.vector().log_prob(np.zeros((2, 2), "float32"), context=[0, 1]),
                                 ValueError, "not conditional"),
    "missing_labels": (lambda e: e.labelled().log_prob(np.zeros((2, 2), "float32")), ValueError,
                       "this model is conditional"),
    "label_out_of_range": (lambda e: e.labelled().log_prob(np.zeros((2, 2), "float32"), context=[0, 3]),
                           ValueError, "0..2"),
    # section 4: empty batches are valid (tests/test_models.py); non-finite inputs, levels out of range
    "sample_fraction": (lambda e: e.glow().sample(1.5), ValueError,
                        "num_samples must be an integer >= 0, got 1.5"),
    "sample_bool": (lambda e: e.glow().sample(True), ValueError, "num_samples must be an integer >= 0"),
    "log_prob_nan": (lambda e: e.glow().log_prob(_images(2, math.nan)), ValueError,
                     "expected finite x, got 128 inf or NaN values"),
    "log_prob_inf_vector": (lambda e: e.vector().log_prob(np.array([[math.inf, 0.0]], "float32")),
                            ValueError, "expected finite x, got 1 inf or NaN"),
    "encode_nan": (lambda e: e.glow().encode(_images(1, math.nan)), ValueError, "expected finite x"),
    "encode_inf_vector": (lambda e: e.vector().encode(np.array([[0.0, -math.inf]], "float32")),
                          ValueError, "expected finite x"),
    "decode_nan_latents": (lambda e: e.glow().decode(np.full((1, 64), math.nan, "float32")), ValueError,
                           "expected finite latents"),
    "decode_inf_vector": (lambda e: e.vector().decode(np.array([[math.inf, 0.0]], "float32")), ValueError,
                          "expected finite latents"),
    "log_prob_level_too_big": (lambda e: e.glow().log_prob(_images(2, 32.0)), ValueError,
                               "pixel levels in [0, 32) for num_bits=5, got values from 32 to 32"),
    "log_prob_level_negative": (lambda e: e.glow().log_prob(_images(2, -0.5)), ValueError,
                                "pixel levels in [0, 32)"),
    "log_prob_8bit_pixels": (lambda e: e.glow().log_prob(_images(2, 200.0)), ValueError,
                             "8-bit pixels given to a model of fewer bits?"),
    "bits_per_dim_level_too_big": (lambda e: e.glow().bits_per_dim(_images(1, 40.0)), ValueError,
                                   "pixel levels in [0, 32)"),
    "labelled_log_prob_nan": (
        lambda e: e.labelled().log_prob(np.array([[math.nan, 0.0]], "float32"), context=[1]), ValueError,
        "expected finite x"),
}

# -- training, saving and the non-finite guard -----------------------------------------
TRAINING_ROWS: dict[str, Row] = {
    "save_nonfinite_model": (
        lambda e: _nan_copy(e).save(str(e.tmp / "nan.keras")), ValueError, "non-finite weights"),
    "save_weights_nonfinite_model": (
        lambda e: _nan_copy(e).save_weights(str(e.tmp / "nan.weights.h5")), ValueError,
        "non-finite weights"),
    "clipnorm_zero": (lambda e: make_optimizer(1e-3, clipnorm=0.0), ValueError, "clipnorm"),
    "lr_zero": (lambda e: make_optimizer(0.0), ValueError,
                "learning_rate must be a finite number > 0, got 0.0"),
    "lr_negative": (lambda e: make_optimizer(-1e-3), ValueError, "learning_rate must be a finite number > 0"),
    "lr_nan": (lambda e: make_optimizer(math.nan), ValueError,
               "learning_rate must be a finite number > 0, got nan"),
    "lr_inf": (lambda e: make_optimizer(math.inf), ValueError,
               "learning_rate must be a finite number > 0, got inf"),
    "clipnorm_negative": (lambda e: make_optimizer(1e-3, clipnorm=-5.0), ValueError,
                          "clipnorm must be a finite number > 0 or None, got -5.0"),
    "clipnorm_nan": (lambda e: make_optimizer(1e-3, clipnorm=math.nan), ValueError,
                     "clipnorm must be a finite"),
    "clipnorm_inf": (lambda e: make_optimizer(1e-3, clipnorm=math.inf), ValueError,
                     "clipnorm must be a finite"),
    "warmup_negative": (lambda e: make_optimizer(1e-3, warmup_steps=-1), ValueError,
                        "warmup_steps must be a whole number of steps >= 0, got -1"),
    "warmup_nan": (lambda e: make_optimizer(1e-3, warmup_steps=math.nan), ValueError, "warmup_steps must be"),
    "warmup_inf": (lambda e: make_optimizer(1e-3, warmup_steps=math.inf), ValueError, "warmup_steps must be"),
    "decay_negative": (lambda e: make_optimizer(1e-3, decay_steps=-10), ValueError,
                       "decay_steps must be a whole number of steps >= 0, got -10"),
    "decay_fractional": (lambda e: make_optimizer(1e-3, decay_steps=2.5), ValueError, "decay_steps must be"),
    "export_nonfinite_model": (lambda e: tfflows.export_saved_model(_nan_copy(e), e.tmp / "nan" / "1"),
                               ValueError, "refusing to export a model with non-finite weights"),
    "cli_export_nonfinite_model": (lambda e: cli("export", _nan_keras_file(e), str(e.tmp / "served")),
                                   CliError, "refusing to export a model with non-finite weights"),
    "cli_train_negative_warmup": (
        lambda e: cli("train", "--warmup", "-5", "--width", "8", "--steps", "1", "--epochs", "1",
                      "--out", str(e.tmp / "run")), CliError, "warmup_steps must be a whole number"),
    "sample_clip_latent_zero": (lambda e: e.glow().sample(2, clip_latent=0.0), ValueError,
                                "clip_latent must be a finite number > 0 or None, got 0.0"),
    "sample_check_zero_samples": (lambda e: SampleCheck(0), ValueError,
                                  "num_samples must be a positive integer, got 0"),
}

# -- data --------------------------------------------------------------------------------
DATA_ROWS: dict[str, Row] = {
    "unknown_toy": (lambda e: data.sample_toy("spiral9", 10), ValueError, "spiral9"),
    # section 4: source bits, TFDS names
    "digits_as_8_bit": (lambda e: data.make_dataset(data.load_images("digits", "test"), num_bits=5),
                        ValueError, "they look like 5-bit data; pass source_bits=5"),
    "source_bits_too_few": (lambda e: data.make_dataset(np.full((2, 4, 4, 1), 200, np.uint8), num_bits=5,
                                                        source_bits=7), ValueError,
                            "got a maximum of 200 (pass source_bits=8"),
    "inferred_bits_below_n_bits": (
        lambda e: data.make_dataset(data.load_images("digits", "test"), num_bits=8, source_bits=None),
        ValueError, "num_bits must be in 1..source_bits=5"),
    "make_dataset_batch_size_fraction": (
        lambda e: data.make_dataset(np.full((2, 4, 4, 1), 200, np.uint8), batch_size=2.5), ValueError,
        "batch_size must be a positive integer; got 2.5"),
    "tfds_unknown_name": (lambda e: data.load_images("no_such_dataset_tfflows"), ValueError,
                          "TFDS has no dataset 'no_such_dataset_tfflows'"),
    "tfds_offline": (lambda e: _offline(lambda: data.load_images("cifar10")), ValueError,
                     "'cifar10' is not downloaded"),
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
    return cli("train", "--epochs", "1", "--steps-per-epoch", "1", "--width", "8", "--steps", "1",
               "--verbose", "0", *argv)


CLI_ROWS: dict[str, Row] = {
    "cli_no_command": (lambda e: cli(), CliError, "required"),
    "cli_bad_lr": (lambda e: cli("train", "--lr", "-1"), CliError, "finite number > 0"),
    "cli_evaluate_missing_model": (lambda e: cli("evaluate", str(e.tmp / "none.keras")), CliError,
                                   "no model file"),
    "cli_train_rerun_finished": (
        lambda e: _tiny_train(e, "--out", _holding(e, "out", "results.json", "model.keras")),
        CliError, "holds a finished run (results.json, model.keras); pass --resume"),
    "cli_train_rerun_interrupted": (
        lambda e: _tiny_train(e, "--out", _holding(e, "out", "backup/latest.weights.h5")),
        CliError, "holds an interrupted run (backup/; no results.json); pass --resume"),
    "cli_train_resume_and_overwrite": (
        lambda e: _tiny_train(e, "--resume", "--overwrite"), CliError, "not allowed with argument"),
    "cli_train_out_is_a_file": (
        lambda e: _tiny_train(e, "--out", str(Path(_holding(e, "d", "out")) / "out")), CliError,
        "is not a folder"),
    "cli_train_missing_data_dir": (
        lambda e: _tiny_train(e, "--dataset", "mnist", "--data-dir", str(e.tmp / "nowhere"),
                              "--out", str(e.tmp / "out")),
        CliError, "/nowhere' does not exist or is not a folder"),
    "cli_train_data_dir_is_a_file": (
        lambda e: _tiny_train(e, "--data-dir", str(Path(_holding(e, "d", "idx")) / "idx"),
                              "--out", str(e.tmp / "out")),
        CliError, "is not a folder (expected a folder holding the IDX files of 'digits')"),
    "cli_evaluate_without_dataset": (
        lambda e: cli("evaluate", _model_beside(e)), CliError, "pass --dataset: there is no results.json"),
    "cli_evaluate_missing_data_dir": (
        lambda e: cli("evaluate", e.keras_file(), "--dataset", "mnist", "--data-dir", str(e.tmp / "nowhere")),
        CliError, "does not exist"),
    "cli_evaluate_unreadable_results": (
        lambda e: cli("evaluate", _model_beside(e, results=b'{"dataset": "dig')), CliError,
        "results.json' is unreadable"),
    "cli_evaluate_truncated_model": (
        lambda e: cli("evaluate", _model_beside(e, cut=True), "--dataset", "digits"), CliError,
        "could not load the model file"),
    "cli_export_into_occupied_folder": (
        lambda e: cli("export", e.keras_file(), _holding(e, "serving", "1/notes.txt")), CliError,
        "is not empty; TF Serving versions are immutable"),
    "cli_export_overwrite_foreign_folder": (
        lambda e: cli("export", e.keras_file(), _holding(e, "serving", "1/saved_model.pb"), "--overwrite"),
        CliError, "holds no SavedModel written by tfflows"),
    "cli_export_version_is_a_file": (
        lambda e: cli("export", e.keras_file(), _holding(e, "serving", "1")), CliError, "is not a folder"),
    "cli_sample_into_missing_folder": (
        lambda e: cli("sample", e.keras_file(), "--out", str(e.tmp / "nowhere" / "s.png")), CliError,
        "does not exist"),
    # section 4: corrupt and wrong model files, datasets that cannot be had
    "cli_evaluate_garbage_file": (
        lambda e: cli("evaluate", _garbage(e, "x.keras"), "--dataset", "digits"), CliError,
        "not a readable .keras model file"),
    "cli_sample_truncated_file": (
        lambda e: cli("sample", _truncated(e), "--out", str(e.tmp / "s.png")), CliError,
        "not a readable .keras model file"),
    "cli_export_garbage_file": (lambda e: cli("export", _garbage(e, "x.keras"), str(e.tmp / "out")),
                                CliError, "not a readable .keras model file"),
    "cli_evaluate_folder": (lambda e: cli("evaluate", str(e.tmp), "--dataset", "digits"), CliError,
                            "got the folder"),
    "cli_evaluate_not_keras": (lambda e: cli("evaluate", _garbage(e, "model.h5"), "--dataset", "digits"),
                               CliError, "expected a .keras model file"),
    "cli_evaluate_not_a_flow": (lambda e: cli("evaluate", _plain_keras_model(e), "--dataset", "digits"),
                                CliError, "expected a tfflows flow model"),
    "cli_train_unknown_dataset": (
        lambda e: cli("train", "--dataset", "no_such_dataset_tfflows", "--out", str(e.tmp / "run")),
        CliError, "TFDS has no dataset 'no_such_dataset_tfflows'"),
    "cli_train_offline_tfds": (
        lambda e: _offline(lambda: cli("train", "--dataset", "cifar10", "--out", str(e.tmp / "run"))),
        CliError, "'cifar10' is not downloaded"),
    # TarFlow's training and sampling options, given where they do nothing
    "cli_train_noise_for_glow": (
        lambda e: _tiny_train(e, "--noise", "gaussian", "--out", str(e.tmp / "out")), CliError,
        "--noise is a training option of --model tarflow, got --model glow"),
    "cli_train_noise_std_without_gaussian_noise": (
        lambda e: _tiny_train(e, "--model", "tarflow", "--noise-std", "0.1", "--out", str(e.tmp / "out")),
        CliError, "--noise-std is the std of --noise gaussian, got --noise uniform (the default)"),
    "cli_train_label_dropout_unconditional": (
        lambda e: _tiny_train(e, "--model", "tarflow", "--label-dropout", "0.2", "--out", str(e.tmp / "out")),
        CliError, "--label-dropout is for class-conditional models (--conditional)"),
    "cli_train_label_dropout_one": (
        lambda e: cli("train", "--model", "tarflow", "--label-dropout", "1"), CliError,
        "expected a probability in [0, 1), got 1"),
    "cli_sample_guidance_for_glow": (
        lambda e: cli("sample", e.keras_file(), "--guidance", "1.5", "--out", str(e.tmp / "s.png")),
        CliError, "--guidance is for class-conditional TarFlow models (trained with --conditional), "
                  "got a Glow"),
    "cli_sample_denoise_for_glow": (
        lambda e: cli("sample", e.keras_file(), "--denoise", "--out", str(e.tmp / "s.png")), CliError,
        "--denoise is for TarFlow models trained with --noise gaussian, got a Glow"),
    "cli_sample_guidance_nan": (
        lambda e: cli("sample", e.keras_file(), "--guidance", "nan"), CliError,
        "expected a finite number, got nan"),
}

# -- the SavedModel --------------------------------------------------------------------
SAVEDMODEL_ROWS: dict[str, Row] = {
    "serve_wrong_channels": (_serve("log_prob", images=np.zeros((1, 8, 8, 3), np.uint8)),
                             tf.errors.InvalidArgumentError, "not compatible"),
    "serve_too_many_samples": (
        _serve("sample", num_samples=np.int32(10**6), temperature=np.float32(1), seed=np.int64(0)),
        tf.errors.InvalidArgumentError, "num_samples must be in"),
    "serve_nan_temperature": (
        _serve("sample", num_samples=np.int32(2), temperature=np.float32(np.nan), seed=np.int64(0)),
        tf.errors.InvalidArgumentError, "temperature must be finite"),
    "serve_nan_latents": (_serve("decode", latents=np.full((1, 64), np.nan, np.float32)),
                          tf.errors.InvalidArgumentError, "latents must be finite"),
    "serve_float_levels_too_big": (_serve("log_prob_float", images=_images(1, 40.0)),
                                   tf.errors.InvalidArgumentError, "pixel levels in [0, 32)"),
    "serve_negative_samples": (
        _serve("sample", num_samples=np.int32(-1), temperature=np.float32(1), seed=np.int64(0)),
        tf.errors.InvalidArgumentError, "num_samples must be in 0..4096"),
    "serve_negative_temperature": (
        _serve("sample", num_samples=np.int32(2), temperature=np.float32(-0.5), seed=np.int64(0)),
        tf.errors.InvalidArgumentError, "temperature must be >= 0"),
    "serve_wrong_size": (_serve("log_prob", images=np.zeros((1, 4, 4, 1), np.uint8)),
                         tf.errors.InvalidArgumentError, "not compatible"),
    "serve_encode_wrong_size": (_serve("encode", images=np.zeros((2, 16, 16, 1), np.uint8)),
                                tf.errors.InvalidArgumentError, "not compatible"),
    "serve_latents_wrong_size": (_serve("decode", latents=np.zeros((1, 63), np.float32)),
                                 tf.errors.InvalidArgumentError, "not compatible"),
    "serve_inf_latents": (_serve("decode", latents=np.full((1, 64), np.inf, np.float32)),
                          tf.errors.InvalidArgumentError, "latents must be finite"),
    "serve_negative_float_levels": (_serve("log_prob_float", images=_images(1, -1.0)),
                                    tf.errors.InvalidArgumentError, "pixel levels in [0, 32)"),
    "serve_nan_float_levels": (_serve("log_prob_float", images=_images(1, np.nan)),
                               tf.errors.InvalidArgumentError, "pixel levels in [0, 32)"),
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
    model = tfflows.VectorRealNVP(2, num_layers=2, hidden_units=8)
    weight = model.trainable_variables[-1]
    weight.assign(tf.fill(weight.shape, math.nan))
    return model


def _nan_keras_file(env: Env) -> str:
    """A ``.keras`` file with a NaN weight, as a version before the guard could write."""
    import keras

    path = str(env.tmp / "nan.keras")
    keras.Model.save(_nan_copy(env), path)  # past FlowModel.save, which refuses it
    return path


ROWS: dict[str, Row] = {**MODEL_ROWS, **TRAINING_ROWS, **DATA_ROWS, **CLI_ROWS, **SAVEDMODEL_ROWS}


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_inputs_shared")


@pytest.mark.parametrize("row", list(ROWS), ids=list(ROWS))
def test_bad_input_gets_a_clear_error(row, tmp_path, shared):
    call, error, substring = ROWS[row]
    with pytest.raises(error) as info:
        call(Env(tmp_path, shared))
    assert substring in str(info.value), f"{row}: message lacks {substring!r}: {info.value}"


def test_cli_train_refusals_name_the_option(tmp_path):
    """Refusals before any training (moved here from test_cli.py, where each started a Python)."""
    with pytest.raises(CliError, match="--model jet is an image flow over patches"):
        cli("train", "--model", "jet", "--dataset", "two_moons", "--epochs", "1",
            "--out", str(tmp_path / "a"))
    with pytest.raises(CliError, match="recompute"):
        cli("train", "--model", "tarflow", "--patch-size", "4", "--steps", "1", "--epochs", "1",
            "--backprop", "reversible", "--out", str(tmp_path / "b"))
    with pytest.raises(CliError) as info:
        cli("train", "--dtype", "float16", "--out", str(tmp_path / "c"))
    assert info.value.code == 2 and "--dtype" in str(info.value) and "mixed_float16" in str(info.value)


def test_the_table_is_large_enough():
    assert len(ROWS) >= 60, f"the bad-input table has {len(ROWS)} rows; the issue asks for 60"
