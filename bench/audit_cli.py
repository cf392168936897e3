"""The audit's CLI rows (in this process, through tfflows.cli.main), multi-worker flags and the fault rows."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from audit_grading import Cli, CliOk, Handle, Row, cli, fresh, tiny, write

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _glow_file() -> str:
    path = fresh("k") / "glow.keras"
    tiny("glow-image").save(str(path))
    return str(path)


@functools.cache
def _maf_file() -> str:
    path = fresh("k") / "maf.keras"
    tiny("maf-vector").save(str(path))
    return str(path)


@functools.cache
def _idf_file() -> str:
    from audit_surfaces_io import _idf

    path = fresh("k") / "idf.keras"
    _idf().save(str(path))
    return str(path)


@functools.cache
def _packed_file() -> str:
    from audit_surfaces_io import _packed

    return write(fresh("p") / "images.tffc", _packed())


def _png_dir(n=2, size=8, mode="L", value=None) -> str:
    from PIL import Image

    d = fresh("png")
    for i in range(n):
        arr = np.full(
            (size, size) if mode == "L" else (size, size, 3), value if value is not None else 3 * i, np.uint8
        )
        Image.fromarray(arr).save(d / f"{i}.png")
    return str(d)


def _csv(text: str) -> str:
    return write(fresh("csv") / "data.csv", text)


def _rows(n: int, header: str = "a,b") -> str:
    return header + "\n" + "".join(f"{i},{(i * 3) % 7}\n" for i in range(n))


def _train(*argv: str):
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
        "--out",
        str(fresh("run") / "out"),
        *argv,
    )


def _cli_row(rid, argv_fn, subs=()):
    return Row("cli", rid, argv_fn, Cli(tuple(subs)))


def cli_rows() -> list[Row]:
    g = _glow_file
    t = _train
    rows = [
        # train: flags
        _cli_row("train.batch_size_zero", lambda: t("--batch-size", "0"), ["--batch-size", "0"]),
        _cli_row("train.epochs_negative", lambda: t("--epochs", "-1"), ["--epochs", "-1"]),
        _cli_row("train.lr_text", lambda: t("--lr", "fast"), ["--lr", "fast"]),
        _cli_row("train.width_zero", lambda: t("--width", "0"), ["--width", "0"]),
        _cli_row("train.levels_zero", lambda: t("--levels", "0"), ["--levels", "0"]),
        _cli_row("train.levels_too_many_for_8x8", lambda: t("--levels", "5"), ["num_levels"]),
        _cli_row("train.num_bits_9", lambda: t("--num-bits", "9"), ["9"]),
        _cli_row("train.num_bits_and_n_bits", lambda: t("--num-bits", "4", "--n-bits", "4"), ["--n-bits"]),
        _cli_row("train.coupling_unknown", lambda: t("--coupling", "quadratic"), ["quadratic"]),
        _cli_row("train.jit_bogus", lambda: t("--jit", "maybe"), ["maybe"]),
        _cli_row("train.test_at_negative", lambda: t("--test-at", "-1"), ["-1"]),
        _cli_row("train.time_limit_nan", lambda: t("--time-limit", "nan"), ["nan"]),
        _cli_row("train.time_limit_inf", lambda: t("--time-limit", "inf"), ["inf"]),
        _cli_row("train.perturb_zero", lambda: t("--perturb", "0"), ["--perturb", "0"]),
        _cli_row("train.perturb_above_one", lambda: t("--perturb", "1.5"), ["1.5"]),
        _cli_row("train.keep_checkpoints_zero", lambda: t("--keep-checkpoints", "0"), ["0"]),
        _cli_row("train.extras_share_zero", lambda: t("--extras-share", "0"), ["0"]),
        _cli_row("train.max_train_zero", lambda: t("--max-train", "0"), ["0"]),
        _cli_row("train.seed_text", lambda: t("--seed", "abc"), ["abc"]),
        _cli_row("train.val_fraction_one", lambda: t("--val-fraction", "1"), ["1"]),
        _cli_row("train.patience_zero", lambda: t("--patience", "0"), ["0"]),
        _cli_row("train.model_unknown", lambda: t("--model", "flowy"), ["flowy"]),
        _cli_row("train.maf_on_images", lambda: t("--model", "maf"), ["maf", "image"]),
        _cli_row("train.idf_conditional", lambda: t("--model", "idf", "--conditional"), ["--conditional"]),
        _cli_row(
            "train.tarflow_patch_3", lambda: t("--model", "tarflow", "--patch-size", "3"), ["patch_size", "3"]
        ),
        _cli_row("train.tarflow_heads_3", lambda: t("--model", "tarflow", "--heads", "3"), ["heads", "3"]),
        _cli_row("train.blocks_for_glow", lambda: t("--blocks", "2"), ["--blocks"]),
        _cli_row(
            "train.blocks_and_depth",
            lambda: t("--model", "realnvp", "--blocks", "2", "--depth", "2"),
            ["--blocks", "--depth"],
        ),
        _cli_row(
            "train.noise_std_nan",
            lambda: t("--model", "tarflow", "--noise", "gaussian", "--noise-std", "nan"),
            ["nan"],
        ),
        _cli_row(
            "train.label_dropout_negative",
            lambda: t("--model", "tarflow", "--label-dropout", "-0.1"),
            ["-0.1"],
        ),
        _cli_row("train.out_empty", lambda: cli("train", "--epochs", "1", "--out", ""), ["--out"]),
        _cli_row(
            "train.out_under_a_file",
            lambda: t("--out", str(Path(write(fresh("f") / "file", b"x")) / "run")),
            ["file"],
        ),
        _cli_row(
            "train.out_in_proc",
            lambda: cli(
                "train",
                "--epochs",
                "1",
                "--steps-per-epoch",
                "1",
                "--width",
                "8",
                "--steps",
                "1",
                "--out",
                "/proc/tfflows_run",
            ),
            ["/proc/tfflows_run"],
        ),
        Row(
            "cli",
            "train.resume_empty_folder_starts_fresh_and_says_so",
            lambda: cli(
                "train",
                "--resume",
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
                "--out",
                str(fresh("run")),
            ),
            CliOk(),
        ),
        _cli_row("train.dtype_mixed16_tarflow_unknown_flag", lambda: t("--dtypes", "float32"), ["--dtypes"]),
        _cli_row("train.verbose_3", lambda: t("--verbose", "3"), ["3"]),
        # train: datasets and CSV files
        _cli_row(
            "train.dataset_missing_csv",
            lambda: t("--model", "maf", "--dataset", str(fresh("c") / "nope.csv")),
            ["nope.csv"],
        ),
        _cli_row("train.dataset_folder", lambda: t("--dataset", str(fresh("c"))), [("folder", "dataset")]),
        _cli_row("train.csv_empty", lambda: t("--model", "maf", "--dataset", _csv("")), ["data.csv"]),
        _cli_row(
            "train.csv_nan", lambda: t("--model", "maf", "--dataset", _csv(_rows(20) + "nan,1\n")), ["nan"]
        ),
        _cli_row(
            "train.csv_inf", lambda: t("--model", "maf", "--dataset", _csv(_rows(20) + "1,-inf\n")), ["inf"]
        ),
        _cli_row(
            "train.csv_text_cell",
            lambda: t("--model", "maf", "--dataset", _csv(_rows(20) + "1,two\n")),
            ["two"],
        ),
        _cli_row(
            "train.csv_ragged",
            lambda: t("--model", "maf", "--dataset", _csv(_rows(20) + "1\n")),
            ["data.csv"],
        ),
        _cli_row(
            "train.csv_semicolons",
            lambda: t(
                "--model", "maf", "--dataset", _csv("a;b\n" + "".join(f"{i};{i}\n" for i in range(20)))
            ),
            ["data.csv"],
        ),
        _cli_row(
            "train.csv_unknown_column",
            lambda: t("--model", "maf", "--dataset", _csv(_rows(20)), "--columns", "a,zz"),
            ["zz"],
        ),
        _cli_row(
            "train.csv_huge_variance",
            lambda: t(
                "--model",
                "maf",
                "--dataset",
                _csv("a,b\n" + "".join(f"{(-1) ** i * 1e200},{i}\n" for i in range(20))),
            ),
            [("1e+200", "float32", "overflow", "finite")],
        ),
        Row(
            "cli",
            "train.csv_constant_column_warns_and_trains",
            lambda: t(
                "--model",
                "maf",
                "--dataset",
                _csv("a,b\n" + "".join(f"{i},5\n" for i in range(20))),
                "--no-early-stopping",
            ),
            CliOk(),
        ),
        _cli_row(
            "train.csv_with_image_model", lambda: t("--model", "jet", "--dataset", _csv(_rows(20))), ["jet"]
        ),
        _cli_row(
            "train.csv_conditional",
            lambda: t("--model", "maf", "--dataset", _csv(_rows(20)), "--conditional"),
            ["--conditional"],
        ),
        _cli_row(
            "train.toy_with_num_bits",
            lambda: t("--model", "maf", "--dataset", "two_moons", "--num-bits", "5"),
            ["--num-bits"],
        ),
        _cli_row(
            "train.toy_with_levels_for_vector",
            lambda: t("--model", "maf", "--dataset", "rings", "--patch-size", "2"),
            ["--patch-size"],
        ),
        _cli_row(
            "train.data_dir_empty_folder",
            lambda: t("--dataset", "mnist", "--data-dir", str(fresh("idx"))),
            ["mnist"],
        ),
        _cli_row(
            "train.data_dir_garbage_idx",
            lambda: t("--dataset", "mnist", "--data-dir", _garbage_idx_dir()),
            [("idx", "IDX")],
        ),
        # evaluate
        _cli_row(
            "evaluate.split_unknown",
            lambda: cli("evaluate", g(), "--dataset", "digits", "--split", "valid"),
            ["valid"],
        ),
        _cli_row("evaluate.batch_zero", lambda: cli("evaluate", g(), "--batch-size", "0"), ["0"]),
        _cli_row(
            "evaluate.toy_for_image_model",
            lambda: cli("evaluate", g(), "--dataset", "two_moons"),
            ["two_moons"],
        ),
        _cli_row(
            "evaluate.csv_for_image_model",
            lambda: cli("evaluate", g(), "--dataset", _csv(_rows(20))),
            ["data.csv"],
        ),
        _cli_row(
            "evaluate.image_data_for_vector_model",
            lambda: cli("evaluate", _maf_file(), "--dataset", "digits"),
            ["digits"],
        ),
        _cli_row(
            "evaluate.empty_model_file",
            lambda: cli("evaluate", write(fresh("k") / "e.keras", b""), "--dataset", "digits"),
            ["e.keras"],
        ),
        _cli_row(
            "evaluate.saved_model_folder",
            lambda: cli("evaluate", _export_dir(), "--dataset", "digits"),
            [("folder", ".keras")],
        ),
        _cli_row(
            "evaluate.idf_model",
            lambda: cli("evaluate", _idf_file(), "--dataset", "digits"),
            [("IDF", "idf", "flow")],
        ),
        _cli_row(
            "evaluate.mnist_for_8x8_model",
            lambda: cli("evaluate", g(), "--dataset", "fashion_mnist", "--data-dir", str(fresh("idx"))),
            ["fashion_mnist"],
        ),
        # score
        _cli_row(
            "score.ood_unknown",
            lambda: cli("score", g(), "--in-dataset", "digits", "--ood-dataset", "pinknoise"),
            ["pinknoise"],
        ),
        _cli_row(
            "score.ood_class_11",
            lambda: cli("score", g(), "--in-dataset", "digits", "--ood-dataset", "digits:class=11"),
            ["11"],
        ),
        _cli_row(
            "score.ood_class_text",
            lambda: cli("score", g(), "--in-dataset", "digits", "--ood-dataset", "digits:class=x"),
            ["digits:class=x"],
        ),
        _cli_row(
            "score.ood_noise_class",
            lambda: cli("score", g(), "--in-dataset", "digits", "--ood-dataset", "noise:class=1"),
            ["noise"],
        ),
        _cli_row(
            "score.max_examples_zero",
            lambda: cli(
                "score", g(), "--in-dataset", "digits", "--ood-dataset", "noise", "--max-examples", "0"
            ),
            ["0"],
        ),
        _cli_row(
            "score.typicality_batch_zero",
            lambda: cli(
                "score", g(), "--in-dataset", "digits", "--ood-dataset", "noise", "--typicality-batch", "0"
            ),
            ["0"],
        ),
        _cli_row(
            "score.json_out_missing_folder",
            lambda: cli(
                "score",
                g(),
                "--in-dataset",
                "digits",
                "--ood-dataset",
                "noise",
                "--max-examples",
                "20",
                "--train-examples",
                "0",
                "--json-out",
                str(fresh("j") / "no" / "t.json"),
            ),
            ["t.json"],
        ),
        _cli_row(
            "score.background_missing",
            lambda: cli(
                "score",
                g(),
                "--in-dataset",
                "digits",
                "--ood-dataset",
                "noise",
                "--background",
                str(fresh("b") / "bg.keras"),
            ),
            ["bg.keras"],
        ),
        _cli_row(
            "score.background_vector_model",
            lambda: cli(
                "score",
                g(),
                "--in-dataset",
                "digits",
                "--ood-dataset",
                "noise",
                "--max-examples",
                "20",
                "--background",
                _maf_file(),
            ),
            [("background", "maf")],
        ),
        _cli_row(
            "score.in_dataset_toy",
            lambda: cli(
                "score", g(), "--in-dataset", "digits", "--ood-dataset", "noise", "--in-dataset", "two_moons"
            ),
            ["two_moons"],
        ),
        _cli_row(
            "score.vector_model",
            lambda: cli("score", _maf_file(), "--ood-dataset", "noise"),
            [("image", "vector")],
        ),
        _cli_row("score.no_ood_dataset", lambda: cli("score", g()), ["--ood-dataset"]),
        _cli_row(
            "score.foreign_saved_model_folder",
            lambda: cli("score", _foreign_saved_model(), "--ood-dataset", "noise"),
            [("SavedModel", "tfflows", "signature")],
        ),
        _cli_row(
            "score.split_unknown",
            lambda: cli("score", g(), "--in-dataset", "digits", "--ood-dataset", "noise", "--split", "dev"),
            ["dev"],
        ),
        # sample
        _cli_row(
            "sample.num_zero",
            lambda: cli("sample", g(), "--num", "0", "--out", str(fresh("s") / "s.png")),
            ["0"],
        ),
        _cli_row(
            "sample.temperature_nan",
            lambda: cli("sample", g(), "--temperatures", "nan", "--out", str(fresh("s") / "s.png")),
            ["nan"],
        ),
        _cli_row(
            "sample.temperature_negative",
            lambda: cli("sample", g(), "--temperatures", "-1", "--out", str(fresh("s") / "s.png")),
            ["-1"],
        ),
        _cli_row(
            "sample.temperature_inf",
            lambda: cli("sample", g(), "--temperatures", "inf", "--out", str(fresh("s") / "s.png")),
            ["inf"],
        ),
        _cli_row("sample.out_txt", lambda: cli("sample", g(), "--out", str(fresh("s") / "s.txt")), ["s.txt"]),
        _cli_row(
            "sample.out_is_a_folder",
            lambda: cli("sample", g(), "--out", str(fresh("s"))),
            [("folder", "directory")],
        ),
        _cli_row("sample.seed_text", lambda: cli("sample", g(), "--seed", "x"), ["x"]),
        _cli_row(
            "sample.idf_model",
            lambda: cli("sample", _idf_file(), "--out", str(fresh("s") / "s.png")),
            [("IDF", "idf")],
        ),
        _cli_row(
            "sample.num_huge",
            lambda: cli("sample", g(), "--num", "100000000", "--out", str(fresh("s") / "s.png")),
            ["100000000"],
        ),
        Row(
            "cli",
            "sample.vector_model_writes_a_picture",
            lambda: cli("sample", _maf_file(), "--num", "50", "--out", str(fresh("s") / "v.png")),
            CliOk(),
        ),
        # export
        _cli_row("export.version_zero", lambda: cli("export", g(), str(fresh("x")), "--version", "0"), ["0"]),
        _cli_row(
            "export.max_samples_zero",
            lambda: cli("export", g(), str(fresh("x")), "--max-samples", "0"),
            ["0"],
        ),
        _cli_row("export.out_is_a_file", lambda: cli("export", g(), write(fresh("x") / "f", b"x")), ["f"]),
        _cli_row("export.idf_model", lambda: cli("export", _idf_file(), str(fresh("x"))), [("IDF", "idf")]),
        _cli_row(
            "export.empty_model_file",
            lambda: cli("export", write(fresh("k") / "z.keras", b""), str(fresh("x"))),
            ["z.keras"],
        ),
        # compress / decompress
        _cli_row(
            "compress.glow_model",
            lambda: cli("compress", g(), _png_dir(), "-o", str(fresh("o") / "a.tffc")),
            [("IDF", "idf")],
        ),
        _cli_row(
            "compress.missing_images",
            lambda: cli(
                "compress", _idf_file(), str(fresh("o") / "none.png"), "-o", str(fresh("o") / "a.tffc")
            ),
            ["none.png"],
        ),
        _cli_row(
            "compress.empty_folder",
            lambda: cli("compress", _idf_file(), str(fresh("o")), "-o", str(fresh("o") / "a.tffc")),
            [("no image", "empty")],
        ),
        _cli_row(
            "compress.garbage_png",
            lambda: cli(
                "compress",
                _idf_file(),
                write(fresh("o") / "g.png", b"\x89PNGxx"),
                "-o",
                str(fresh("o") / "a.tffc"),
            ),
            ["g.png"],
        ),
        _cli_row(
            "compress.wrong_size_png",
            lambda: cli("compress", _idf_file(), _png_dir(size=16), "-o", str(fresh("o") / "a.tffc")),
            [("16", "size", "shape")],
        ),
        _cli_row(
            "compress.rgb_png",
            lambda: cli("compress", _idf_file(), _png_dir(mode="RGB"), "-o", str(fresh("o") / "a.tffc")),
            [("channel", "RGB", "3")],
        ),
        _cli_row(
            "compress.out_exists",
            lambda: cli("compress", _idf_file(), _png_dir(), "-o", write(fresh("o") / "a.tffc", b"x")),
            [("exists", "--overwrite")],
        ),
        _cli_row(
            "compress.out_missing_folder",
            lambda: cli("compress", _idf_file(), _png_dir(), "-o", str(fresh("o") / "no" / "a.tffc")),
            ["a.tffc"],
        ),
        _cli_row(
            "compress.layout_unknown",
            lambda: cli(
                "compress", _idf_file(), _png_dir(), "-o", str(fresh("o") / "a.tffc"), "--layout", "zip"
            ),
            ["zip"],
        ),
        _cli_row(
            "compress.bright_8bit_png_for_5bit_model",
            lambda: cli("compress", _idf_file(), _png_dir(value=200), "-o", str(fresh("o") / "a.tffc")),
            [("200", "bits", "levels")],
        ),
        _cli_row(
            "decompress.missing_file",
            lambda: cli(
                "decompress", _idf_file(), str(fresh("o") / "no.tffc"), "-o", str(fresh("o") / "out")
            ),
            ["no.tffc"],
        ),
        _cli_row(
            "decompress.random_file",
            lambda: cli(
                "decompress",
                _idf_file(),
                write(fresh("o") / "r.tffc", os.urandom(256)),
                "-o",
                str(fresh("o") / "out"),
            ),
            [("codec", "tfflows")],
        ),
        _cli_row(
            "decompress.truncated_file",
            lambda: cli(
                "decompress",
                _idf_file(),
                write(fresh("o") / "t.tffc", Path(_packed_file()).read_bytes()[:40]),
                "-o",
                str(fresh("o") / "out"),
            ),
            [("truncated", "corrupt")],
        ),
        _cli_row(
            "decompress.out_exists",
            lambda: cli("decompress", _idf_file(), _packed_file(), "-o", str(fresh("o"))),
            [("exists", "--overwrite")],
        ),
        _cli_row(
            "decompress.index_out_of_range",
            lambda: cli(
                "decompress", _idf_file(), _packed_file(), "-o", str(fresh("o") / "out"), "--index", "7"
            ),
            [("7", "random-access")],
        ),
        _cli_row(
            "decompress.glow_model",
            lambda: cli("decompress", g(), _packed_file(), "-o", str(fresh("o") / "out")),
            [("IDF", "idf")],
        ),
        _cli_row(
            "decompress.index_text",
            lambda: cli(
                "decompress", _idf_file(), _packed_file(), "-o", str(fresh("o") / "out"), "--index", "one"
            ),
            ["one"],
        ),
        _cli_row(
            "decompress.folder_as_file",
            lambda: cli("decompress", _idf_file(), str(fresh("o")), "-o", str(fresh("o") / "out")),
            [("folder", "directory")],
        ),
    ]
    return rows


def _garbage_idx_dir() -> str:
    d = fresh("idx")
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        write(d / name, os.urandom(100))
    return str(d)


@functools.cache
def _export_dir() -> str:
    import tfflows

    base = fresh("sm")
    tfflows.export_saved_model(tiny("glow-image"), str(base / "1"))
    return str(base / "1")


@functools.cache
def _foreign_saved_model() -> str:
    import tensorflow as tf

    path = fresh("fsm") / "1"
    module = tf.Module()
    module.f = tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.f})
    return str(path)


# -- multi-worker flags ---------------------------------------------------------------------
def worker_rows() -> list[Row]:
    t = _train
    hosts = "localhost:1,localhost:2"

    def with_env(value, *argv):
        def call():
            old = os.environ.get("TF_CONFIG")
            os.environ["TF_CONFIG"] = value
            try:
                return t(*argv)
            finally:
                if old is None:
                    os.environ.pop("TF_CONFIG", None)
                else:
                    os.environ["TF_CONFIG"] = old

        return call

    return [
        _cli_row("workers.zero", lambda: t("--workers", "0"), ["0"]),
        _cli_row(
            "workers.index_negative", lambda: t("--worker-index", "-1", "--worker-hosts", hosts), ["-1"]
        ),
        _cli_row("workers.index_text", lambda: t("--worker-index", "x"), ["x"]),
        _cli_row(
            "workers.hosts_empty",
            lambda: t("--worker-index", "0", "--worker-hosts", ""),
            [("worker_hosts", "--worker-hosts")],
        ),
        _cli_row(
            "workers.hosts_without_port",
            lambda: t("--worker-index", "0", "--worker-hosts", "alpha,beta"),
            ["alpha"],
        ),
        _cli_row(
            "workers.hosts_bad_port",
            lambda: t("--worker-index", "0", "--worker-hosts", "localhost:abc,localhost:2"),
            ["localhost:abc"],
        ),
        _cli_row(
            "workers.hosts_port_too_big",
            lambda: t("--worker-index", "0", "--worker-hosts", "localhost:99999,localhost:2"),
            ["99999"],
        ),
        _cli_row(
            "workers.hosts_spaces",
            lambda: t("--worker-index", "0", "--worker-hosts", "localhost:1, ,localhost:2"),
            [("worker_hosts", "empty", "''")],
        ),
        _cli_row(
            "workers.join_timeout_zero",
            lambda: t("--worker-index", "0", "--worker-hosts", hosts, "--join-timeout", "0"),
            ["0"],
        ),
        _cli_row("workers.checkpoint_every_zero", lambda: t("--checkpoint-every", "0"), ["0"]),
        _cli_row(
            "workers.hosts_without_index",
            lambda: t("--worker-hosts", hosts),
            [("--worker-index", "worker_index")],
        ),
        _cli_row("workers.tf_config_garbage", with_env("{not json"), ["TF_CONFIG"]),
        _cli_row(
            "workers.tf_config_index_out_of_range",
            with_env(
                json.dumps(
                    {
                        "cluster": {"worker": ["localhost:1", "localhost:2"]},
                        "task": {"type": "worker", "index": 5},
                    }
                )
            ),
            ["5"],
        ),
        _cli_row(
            "workers.tf_config_no_cluster",
            with_env(json.dumps({"task": {"type": "worker", "index": 0}})),
            ["cluster"],
        ),
        _cli_row(
            "workers.tf_config_ps_task",
            with_env(
                json.dumps(
                    {
                        "cluster": {"worker": ["localhost:1"], "ps": ["localhost:3"]},
                        "task": {"type": "ps", "index": 0},
                    }
                )
            ),
            ["ps"],
        ),
        _cli_row("workers.with_resume_and_tf_config_list", with_env("[]"), ["TF_CONFIG"]),
        _cli_row(
            "workers.on_toy_data_with_csv_columns",
            lambda: t("--workers", "2", "--worker-index", "0", "--worker-hosts", hosts, "--columns", "a"),
            ["--columns"],
        ),
    ]


# -- faults: two runs in one folder; killed writes ---------------------------------------------
def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


TRAIN = [
    sys.executable,
    "-m",
    "tfflows.cli",
    "train",
    "--width",
    "8",
    "--steps",
    "1",
    "--verbose",
    "0",
    "--steps-per-epoch",
    "1",
    "--jit",
    "off",
]


def _concurrent() -> tuple[int, str, str]:
    out = fresh("conc") / "run"
    first = subprocess.Popen(
        TRAIN + ["--epochs", "400", "--extras-share", "1", "--out", str(out)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not (out / ".tfflows.lock").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        second = subprocess.run(
            TRAIN + ["--epochs", "1", "--out", str(out)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=90,
        )
        return second.returncode, second.stdout, second.stderr
    finally:
        first.kill()
        first.wait()


def _concurrent_resume() -> tuple[int, str, str]:
    out = fresh("conc") / "run"
    first = subprocess.Popen(
        TRAIN + ["--epochs", "400", "--out", str(out)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while not (out / ".tfflows.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        second = subprocess.run(
            TRAIN + ["--epochs", "400", "--resume", "--out", str(out)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=90,
        )
        return second.returncode, second.stdout, second.stderr
    finally:
        first.kill()
        first.wait()


def _tmp_names(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp-" in p.name)


def _killed_train_then(next_argv) -> str | None:
    """Kills a training run while it writes a checkpoint (a .tmp- name exists), then runs ``next_argv``."""
    out = fresh("kill") / "run"
    run = subprocess.Popen(
        TRAIN + ["--epochs", "400", "--extras-share", "1", "--out", str(out)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and run.poll() is None:
            if (out / "checkpoints").exists() and _tmp_names(out):
                run.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        run.kill()
        run.wait()
    left = _tmp_names(out)
    if not left:
        return "could not catch a write in progress (no litter to clean; row not tried)"
    nxt = subprocess.run(next_argv(out), env=_env(), capture_output=True, text=True, timeout=300)
    after = _tmp_names(out)
    if after:
        return f"litter survives ({after}) after exit {nxt.returncode}: {nxt.stderr.strip()[-200:]}"
    return None


def _epochs_done(out: Path) -> int:
    """The newest epoch with a checkpoint in ``out`` (0 if none): a resume then trains one more."""
    import re

    numbers = [
        int(m.group(1))
        for p in (out / "checkpoints").glob("epoch_*.keras")
        if (m := re.search(r"epoch_(\d+)", p.name))
    ]
    return max(numbers, default=0)


def _killed_export() -> str | None:
    """Kills an export while it writes its temporary version folder, then exports again."""
    model = _glow_file()
    base = fresh("kx")
    argv = [sys.executable, "-m", "tfflows.cli", "export", model, str(base)]
    run = subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            if _tmp_names(base):
                run.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        run.kill()
        run.wait()
    if not _tmp_names(base):
        return "could not catch the export in progress (row not tried)"
    again = subprocess.run(argv + ["--version", "2"], env=_env(), capture_output=True, text=True, timeout=300)
    after = _tmp_names(base)
    if after or again.returncode:
        return (
            f"after the next export (exit {again.returncode}): litter {after} {again.stderr.strip()[-200:]}"
        )
    return None


def fault_rows() -> list[Row]:
    one_line_holder = Cli(("PID", "host"))
    resume_argv = lambda out: TRAIN + ["--epochs", str(_epochs_done(out) + 1), "--resume", "--out", str(out)]
    overwrite_argv = lambda out: TRAIN + ["--epochs", "1", "--overwrite", "--out", str(out)]
    ok = Handle(lambda r: r)
    return [
        Row("faults", "two_trains_one_out", _concurrent, one_line_holder),
        Row("faults", "train_and_resume_one_out", _concurrent_resume, one_line_holder),
        Row("faults", "killed_checkpoint_then_resume", lambda: _killed_train_then(resume_argv), ok),
        Row("faults", "killed_checkpoint_then_overwrite", lambda: _killed_train_then(overwrite_argv), ok),
        Row("faults", "killed_export_then_export", _killed_export, ok),
    ]


SURFACES = {"cli": cli_rows, "workers": worker_rows, "faults": fault_rows}
