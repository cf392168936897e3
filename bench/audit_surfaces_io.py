"""The audit's rows for data, OOD, export, the SavedModel and the codec (the CLI rows: audit_cli.py)."""

from __future__ import annotations

import functools
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from audit_grading import Either, Handle, Refuse, Row, anything, finite, finite_of, fresh, tiny, write

TE = (ValueError, TypeError)
IMG = np.random.default_rng(3).integers(0, 256, (6, 8, 8, 1)).astype(np.uint8)


def _csv(name: str, content: bytes | str) -> str:
    return write(fresh("csv") / name, content)


def _rows(n: int, header: str = "a,b", fmt=lambda i: f"{i},{i * i % 7}") -> str:
    return header + "\n" + "".join(fmt(i) + "\n" for i in range(n))


# -- tfflows.data ------------------------------------------------------------------------
def data_rows() -> list[Row]:
    import tensorflow as tf

    from tfflows import data
    from tfflows.data.tabular import load_csv

    u8 = IMG
    md = data.make_dataset
    cases = [
        (
            "make_dataset.rank3_images",
            lambda: md(np.zeros((4, 8, 8), np.uint8)),
            Either(anything, (("shape", "source_bits"),)),
        ),
        ("make_dataset.rank5_images", lambda: md(np.zeros((2, 4, 8, 8, 1), np.uint8)), Refuse(("shape",))),
        ("make_dataset.strings", lambda: md(np.full((4, 8, 8, 1), "a")), Refuse((("str", "<U1"),), TE)),
        (
            "make_dataset.float_pixels_300",
            lambda: md(np.full((4, 8, 8, 1), 300.0, np.float32)),
            Refuse((("300", "float32"),)),
        ),
        (
            "make_dataset.labels_wrong_length",
            lambda: md(u8, labels=np.arange(3)),
            Refuse(("labels", "3", "6")),
        ),
        ("make_dataset.labels_float", lambda: md(u8, labels=np.full(6, 0.5)), Refuse(("labels",))),
        ("make_dataset.batch_size_zero", lambda: md(u8, batch_size=0), Refuse(("batch_size", "0"))),
        ("make_dataset.batch_size_negative", lambda: md(u8, batch_size=-4), Refuse(("batch_size", "-4"))),
        ("make_dataset.num_bits_zero", lambda: md(u8, num_bits=0), Refuse(("num_bits", "0"))),
        ("make_dataset.num_bits_9_of_8", lambda: md(u8, num_bits=9), Refuse(("num_bits", "9"))),
        ("make_dataset.source_bits_zero", lambda: md(u8, source_bits=0), Refuse(("source_bits", "0"))),
        ("make_dataset.source_bits_17", lambda: md(u8, source_bits=17), Refuse(("source_bits", "17"))),
        (
            "make_dataset.shuffle_buffer_zero",
            lambda: md(u8, shuffle_buffer=0),
            Refuse(("shuffle_buffer", "0")),
        ),
        ("make_dataset.dict_without_images", lambda: md({"pixels_x": u8}), Refuse(("pixels_x",))),
        ("make_dataset.empty", lambda: md(u8[:0]), Refuse((("empty", "no images", "at least one"),))),
        ("make_dataset.none", lambda: md(None), Refuse(("None",), TE)),
        (
            "make_dataset.both_bit_names",
            lambda: md(u8, num_bits=5, n_bits=5),
            Refuse(("n_bits", "num_bits"), TE),
        ),
        (
            "dequantize.num_bits_zero",
            lambda: data.dequantize(tf.constant(u8), num_bits=0),
            Refuse(("num_bits", "0")),
        ),
        (
            "dequantize.bits_above_source",
            lambda: data.dequantize(tf.constant(u8), num_bits=9, source_bits=8),
            Refuse(("num_bits", "9")),
        ),
        (
            "dequantize.float_input",
            lambda: data.dequantize(np.full((2, 2), 3.7, np.float32)),
            Either(finite, ("float",)),
        ),
        ("dequantize.negative_ints", lambda: data.dequantize(np.full((2, 2), -3, np.int32)), Refuse(("-3",))),
        (
            "pixel_levels.num_bits_zero",
            lambda: data.pixel_levels(tf.constant(u8), num_bits=0),
            Refuse(("num_bits", "0")),
        ),
        (
            "pixel_levels.strings",
            lambda: data.pixel_levels(np.full((2, 2), "a"), num_bits=5),
            Refuse(("str",), TE),
        ),
        (
            "bin_centres.num_bits_9",
            lambda: data.bin_centres(tf.constant(u8), num_bits=9),
            Refuse(("num_bits", "9")),
        ),
        (
            "integer_pixel_bits.float_dtype",
            lambda: data.integer_pixel_bits("float32", 8),
            Refuse(("float32",), TE),
        ),
        ("sample_toy.negative_n", lambda: data.sample_toy("two_moons", -1), Refuse(("n", "-1"))),
        ("sample_toy.fraction_n", lambda: data.sample_toy("two_moons", 2.5), Refuse(("n", "2.5"), TE)),
        ("sample_toy.seed_string", lambda: data.sample_toy("rings", 4, seed="x"), Refuse(("seed",), TE)),
        (
            "sample_toy.zero",
            lambda: data.sample_toy("checkerboard", 0),
            Either(finite_of((0, 2)), ("n", "0")),
        ),
        (
            "toy_dataset.batch_zero",
            lambda: data.toy_dataset("two_moons", 10, batch_size=0),
            Refuse(("batch_size", "0")),
        ),
        ("toy_dataset.unknown", lambda: data.toy_dataset("spirals", 10), Refuse(("spirals",))),
        (
            "toy_log_prob.three_columns",
            lambda: data.toy_log_prob("8gaussians", np.zeros((4, 3))),
            Refuse(("shape", "3")),
        ),
        (
            "toy_log_prob.nan_points",
            lambda: data.toy_log_prob("8gaussians", np.full((2, 2), np.nan)),
            Either(finite, ("finite",)),
        ),
        ("toy_log_prob.unknown", lambda: data.toy_log_prob("moons", np.zeros((4, 2))), Refuse(("moons",))),
        ("toy_entropy.unknown", lambda: data.toy_entropy("bogus"), Refuse(("bogus",))),
        (
            "estimate_toy_entropy.n_zero",
            lambda: data.estimate_toy_entropy("8gaussians", n=0),
            Refuse(("n", "0")),
        ),
        (
            "load_images.bad_split",
            lambda: data.load_images("digits", "validation_x"),
            Refuse(("validation_x",)),
        ),
        ("load_images.empty_name", lambda: data.load_images(""), Refuse(("''",))),
        (
            "num_bits_of.tfds_name_is_8_bit",
            lambda: data.num_bits_of("no_such_set"),
            Either(anything, ("no_such_set",)),
        ),
        ("image_key.no_keys", lambda: data.image_key([]), Refuse((("image", "key"),))),
        (
            "read_idx.garbage",
            lambda: data.read_idx(write(fresh("i") / "x.idx", os.urandom(64))),
            Refuse(("x.idx",)),
        ),
        ("read_idx.truncated", lambda: data.read_idx(_truncated_idx()), Refuse(("t.idx",))),
        (
            "read_idx.missing",
            lambda: data.read_idx(str(fresh("i") / "none.idx")),
            Refuse(("none.idx",), (OSError, ValueError)),
        ),
        ("read_idx.huge_claimed", lambda: data.read_idx(_huge_idx()), Refuse(("h.idx",))),
        (
            "write_idx.object_array",
            lambda: data.write_idx(str(fresh("i") / "o.idx"), np.array([1, "a"], object)),
            Refuse(("object",), TE),
        ),
        (
            "write_idx.complex",
            lambda: data.write_idx(str(fresh("i") / "c.idx"), np.zeros(3, np.complex64)),
            Refuse(("complex",), TE),
        ),
        (
            "write_idx.missing_folder",
            lambda: data.write_idx(str(fresh("i") / "no" / "c.idx"), np.zeros(3, np.uint8)),
            Refuse(("c.idx",), (OSError, ValueError)),
        ),
        (
            "image_folder.missing",
            lambda: data.image_folder(str(fresh("f") / "nope")),
            Refuse(("nope",), (OSError, ValueError)),
        ),
        (
            "image_folder.is_a_file",
            lambda: data.image_folder(write(fresh("f") / "a.png", b"x")),
            Refuse(("a.png",), (OSError, ValueError)),
        ),
        (
            "image_folder.empty",
            lambda: data.image_folder(str(fresh("f"))),
            Refuse((("no image", "empty", "no png"),), (OSError, ValueError)),
        ),
        (
            "image_folder.only_text_files",
            lambda: data.image_folder(_folder_of({"a.txt": b"hello"})),
            Refuse((("no image", "empty", "no png"),), (OSError, ValueError)),
        ),
        (
            "image_folder.corrupt_png",
            lambda: _first(data.image_folder(_folder_of({"a.png": b"\x89PNG garbage"}), size=8)),
            Refuse(("a.png",), (OSError, ValueError)),
        ),
        ("image_folder.size_zero", lambda: data.image_folder(_png_folder(), size=0), Refuse(("size", "0"))),
        (
            "image_folder.size_negative",
            lambda: data.image_folder(_png_folder(), size=(-8, 8)),
            Refuse(("size", "-8")),
        ),
        (
            "image_folder.channels_two",
            lambda: data.image_folder(_png_folder(), channels=2),
            Refuse(("channels", "2")),
        ),
        (
            "image_folder.crop_unknown",
            lambda: data.image_folder(_png_folder(), crop="middle"),
            Refuse(("crop", "middle")),
        ),
        (
            "image_folder.batch_zero",
            lambda: data.image_folder(_png_folder(), batch_size=0),
            Refuse(("batch_size", "0")),
        ),
        (
            "image_folder.num_levels_negative",
            lambda: data.image_folder(_png_folder(), num_levels=-1),
            Refuse(("num_levels", "-1")),
        ),
        (
            "image_folder.mixed_sizes_take_the_first_size",
            lambda: _first(data.image_folder(_png_folder(mixed=True), batch_size=3)),
            Either(anything, ("size",), (OSError, ValueError)),
        ),
        (
            "load_csv.missing",
            lambda: load_csv(str(fresh("c") / "nope.csv")),
            Refuse(("nope.csv",), (OSError, ValueError)),
        ),
        (
            "load_csv.folder",
            lambda: load_csv(str(fresh("c"))),
            Refuse((("folder", "directory"),), (OSError, ValueError)),
        ),
        ("load_csv.empty_file", lambda: load_csv(_csv("e.csv", b"")), Refuse(("e.csv",))),
        ("load_csv.header_only", lambda: load_csv(_csv("h.csv", "a,b\n")), Refuse(("h.csv",))),
        (
            "load_csv.nan_cell",
            lambda: load_csv(_csv("n.csv", _rows(5) + "nan,1\n")),
            Refuse(("n.csv", "nan")),
        ),
        (
            "load_csv.inf_cell",
            lambda: load_csv(_csv("i.csv", _rows(5) + "1,inf\n")),
            Refuse(("i.csv", "inf")),
        ),
        (
            "load_csv.text_cell",
            lambda: load_csv(_csv("t.csv", _rows(5) + "1,abc\n")),
            Refuse(("t.csv", "abc")),
        ),
        ("load_csv.ragged_row", lambda: load_csv(_csv("r.csv", _rows(5) + "1,2,3\n")), Refuse(("r.csv",))),
        (
            "load_csv.semicolons",
            lambda: load_csv(_csv("s.csv", "a;b\n1;2\n3;4\n")),
            Either(finite, ("s.csv",)),
        ),
        (
            "load_csv.blank_lines",
            lambda: load_csv(_csv("b.csv", "a,b\n1,2\n\n3,4\n\n")),
            Handle(finite_of((2, 2))),
        ),
        (
            "load_csv.quoted_numbers",
            lambda: load_csv(_csv("q.csv", 'a,b\n"1","2"\n"3","4"\n')),
            Handle(finite_of((2, 2))),
        ),
        ("load_csv.unknown_column", lambda: load_csv(_csv("u.csv", _rows(5)), ["zz"]), Refuse(("zz",))),
        (
            "load_csv.columns_string",
            lambda: load_csv(_csv("u.csv", _rows(5)), "ab"),
            Either(anything, ("columns",), TE),
        ),
        (
            "load_csv.columns_empty_list",
            lambda: load_csv(_csv("u.csv", _rows(5)), []),
            Refuse((("columns", "column names"),)),
        ),
        (
            "load_csv.huge_values",
            lambda: load_csv(_csv("g.csv", _rows(5, fmt=lambda i: f"{i}e300,{i}"))),
            Either(finite, ("g.csv", "float32")),
        ),
        ("load_csv.binary_file", lambda: load_csv(_csv("z.csv", os.urandom(200))), Refuse(("z.csv",))),
        ("load_csv.nul_bytes", lambda: load_csv(_csv("nul.csv", b"a,b\n1,\x002\n")), Refuse(("nul.csv",))),
    ]
    return [Row("data", rid, call, e) for rid, call, e in cases]


def _first(ds):
    return next(iter(ds))


def _folder_of(files: dict) -> str:
    d = fresh("f")
    for name, content in files.items():
        write(d / name, content)
    return str(d)


def _png_folder(mixed: bool = False) -> str:
    from PIL import Image

    d = fresh("png")
    for i in range(3):
        size = (8 + 4 * i * mixed, 8)
        Image.fromarray(np.full(size, 40 * i, np.uint8)).save(d / f"{i}.png")
    return str(d)


def _truncated_idx() -> str:
    from tfflows import data

    path = fresh("i") / "t.idx"
    data.write_idx(str(path), np.zeros((10, 8, 8), np.uint8))
    b = path.read_bytes()
    path.write_bytes(b[: len(b) // 2])
    return str(path)


def _huge_idx() -> str:
    path = fresh("i") / "h.idx"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 2**31 - 1, 2**16, 2**16) + b"\x00" * 64)
    return str(path)


# -- tfflows.ood ----------------------------------------------------------------------------
def ood_rows() -> list[Row]:
    from tfflows import ood

    g = tiny("glow-image")
    x = IMG

    def imgs(n=4):
        return np.random.default_rng(5).integers(0, 256, (n, 8, 8, 1)).astype(np.uint8)

    t = ood.TypicalityTest.fit(np.arange(20.0), batch_size=2)
    cases = [
        ("score.wrong_shape", lambda: ood.score(g, np.zeros((2, 4, 4, 1), np.uint8)), Refuse(("shape",))),
        (
            "score.float_pixels_300",
            lambda: ood.score(g, np.full((2, 8, 8, 1), 300.0, np.float32)),
            Refuse(("300",)),
        ),
        ("score.strings", lambda: ood.score(g, np.full((2, 8, 8, 1), "a")), Refuse((("str", "<U1"),), TE)),
        ("score.batch_size_zero", lambda: ood.score(g, x, batch_size=0), Refuse(("batch_size", "0"))),
        (
            "score.background_other_shape",
            lambda: ood.score(g, x, background=tiny("jet-image")),
            Refuse(("background", "shape")),
        ),
        ("score.vector_model", lambda: ood.score(tiny("maf-vector"), x), Refuse(("image",))),
        ("score.not_a_model", lambda: ood.score("model.keras", x), Refuse(("model.keras",), TE)),
        ("score.train_mean_string", lambda: ood.score(g, x, train_mean_nll="1"), Refuse(("train_mean_nll",))),
        (
            "evaluate.in_wrong_shape",
            lambda: ood.evaluate(g, np.zeros((3, 5, 5, 1), np.uint8), {"n": imgs()}),
            Refuse(("shape",)),
        ),
        (
            "evaluate.ood_wrong_shape",
            lambda: ood.evaluate(g, imgs(), {"n": np.zeros((3, 5, 5, 1), np.uint8)}),
            Refuse(("shape",)),
        ),
        (
            "evaluate.batch_size_zero",
            lambda: ood.evaluate(g, imgs(), {"n": imgs()}, batch_size=0),
            Refuse(("batch_size", "0")),
        ),
        (
            "evaluate.fpr_zero",
            lambda: ood.evaluate(
                g, imgs(), {"n": imgs()}, train_data=imgs(), typicality_batch=2, typicality_fpr=0.0
            ),
            Refuse(("fpr", "0")),
        ),
        (
            "evaluate.fpr_above_one",
            lambda: ood.evaluate(
                g, imgs(), {"n": imgs()}, train_data=imgs(), typicality_batch=2, typicality_fpr=1.5
            ),
            Refuse(("fpr", "1.5")),
        ),
        (
            "evaluate.ood_name_not_string",
            lambda: ood.evaluate(g, imgs(), {3: imgs()}),
            Either(anything, ("ood_data",)),
        ),
        (
            "evaluate.typicality_batch_too_big",
            lambda: ood.evaluate(g, imgs(), {"n": imgs()}, train_data=imgs(), typicality_batch=50),
            Refuse(("typicality_batch", "50")),
        ),
        ("auroc.empty_in", lambda: ood.auroc([], [1.0]), Refuse(("in_scores",))),
        ("auroc.nan_score", lambda: ood.auroc([math.nan, 1.0], [2.0]), Refuse(("NaN",))),
        ("auroc.strings", lambda: ood.auroc(["a"], ["b"]), Refuse(("in_scores",), TE)),
        (
            "auroc.two_dims",
            lambda: ood.auroc(np.zeros((2, 2)), np.ones((2, 2))),
            Either(anything, ("1-D", "shape")),
        ),
        ("aupr.nan_ood", lambda: ood.aupr([1.0], [math.nan]), Refuse(("NaN",))),
        ("fpr_at_tpr.tpr_zero", lambda: ood.fpr_at_tpr([1.0], [2.0], tpr=0.0), Refuse(("tpr", "0"))),
        ("fpr_at_tpr.tpr_above_one", lambda: ood.fpr_at_tpr([1.0], [2.0], tpr=1.5), Refuse(("tpr", "1.5"))),
        ("fpr_at_tpr.tpr_nan", lambda: ood.fpr_at_tpr([1.0], [2.0], tpr=math.nan), Refuse(("tpr", "nan"))),
        ("detection_metrics.empty_ood", lambda: ood.detection_metrics([1.0], []), Refuse(("ood_scores",))),
        (
            "likelihood_ratio.shape_mismatch",
            lambda: ood.likelihood_ratio(np.zeros(3), np.zeros(2)),
            Refuse(("3", "2")),
        ),
        (
            "likelihood_ratio.nan",
            lambda: ood.likelihood_ratio(np.array([math.nan]), np.zeros(1)),
            Either(finite, (("NaN", "finite"),)),
        ),
        (
            "complexity_corrected.shape_mismatch",
            lambda: ood.complexity_corrected(np.zeros(3), np.zeros(4)),
            Refuse(("3", "4")),
        ),
        (
            "complexity_bits_per_dim.num_bits_zero",
            lambda: ood.complexity_bits_per_dim(x, num_bits=0),
            Refuse(("num_bits", "0")),
        ),
        (
            "complexity_bits_per_dim.float_300",
            lambda: ood.complexity_bits_per_dim(np.full((1, 8, 8, 1), 300.0, np.float32)),
            Refuse((("300", "float32"),)),
        ),
        (
            "complexity_bits_per_dim.rank2",
            lambda: ood.complexity_bits_per_dim(np.zeros((8, 8), np.uint8)),
            Refuse(("shape",)),
        ),
        (
            "TypicalityTest.fit_batch_zero",
            lambda: ood.TypicalityTest.fit(np.arange(10.0), batch_size=0),
            Refuse(("batch_size", "0")),
        ),
        (
            "TypicalityTest.fit_batch_bigger_than_data",
            lambda: ood.TypicalityTest.fit(np.arange(10.0), batch_size=50),
            Either(anything, ("batch_size",)),
        ),
        (
            "TypicalityTest.fit_fpr_one",
            lambda: ood.TypicalityTest.fit(np.arange(10.0), batch_size=2, fpr=1.0),
            Refuse(("fpr", "1")),
        ),
        (
            "TypicalityTest.fit_validation_nan",
            lambda: ood.TypicalityTest.fit(np.arange(10.0), np.full(10, math.nan), batch_size=2),
            Refuse(("validation_nll",)),
        ),
        (
            "TypicalityTest.fit_2d_train",
            lambda: ood.TypicalityTest.fit(np.zeros((5, 2)), batch_size=2),
            Refuse(("train_nll",)),
        ),
        ("TypicalityTest.is_ood_strings", lambda: t.is_ood(["a", "b"]), Refuse(("batch_nll",), TE)),
        ("TypicalityTest.is_ood_2d", lambda: t.is_ood(np.zeros((2, 1))), Either(anything, ("batch_nll",))),
        ("TypicalityTest.flag_rate_too_few", lambda: t.flag_rate([1.0]), Refuse(("nll", "1"))),
        ("parse_spec.class_empty", lambda: ood.parse_spec("digits:class="), Refuse(("digits:class=",))),
        ("parse_spec.colon_only", lambda: ood.parse_spec(":"), Refuse(("':'",))),
        (
            "parse_spec.two_options",
            lambda: ood.parse_spec("digits:class=3:without=2"),
            Refuse(("digits:class=3:without=2",)),
        ),
        (
            "load_ood_images.class_11",
            lambda: ood.load_ood_images("digits:class=11", (8, 8, 1)),
            Refuse(("11",)),
        ),
        (
            "load_ood_images.without_negative",
            lambda: ood.load_ood_images("digits:without=-1", (8, 8, 1)),
            Refuse(("-1",)),
        ),
        ("load_ood_images.rank2_shape", lambda: ood.load_ood_images("noise", (8, 8)), Refuse(("shape",))),
        (
            "load_ood_images.zero_shape",
            lambda: ood.load_ood_images("constant", (0, 8, 1)),
            Refuse(("shape",)),
        ),
        (
            "load_ood_images.unknown",
            lambda: ood.load_ood_images("pinknoise", (8, 8, 1)),
            Refuse(("pinknoise",)),
        ),
        (
            "perturb.rate_negative",
            lambda: ood.perturb(x, -0.1, seed=np.array([0, 0])),
            Refuse(("rate", "-0.1")),
        ),
        (
            "perturb.rate_nan",
            lambda: ood.perturb(x, math.nan, seed=np.array([0, 0])),
            Refuse(("rate", "nan")),
        ),
        (
            "perturb.rate_above_one",
            lambda: ood.perturb(x, 1.5, seed=np.array([0, 0])),
            Refuse(("rate", "1.5")),
        ),
        (
            "perturbed_dataset.rate_zero_is_no_perturbation",
            lambda: ood.perturbed_dataset(x, 0.0),
            Either(anything, ("rate",)),
        ),
        ("perturbed_dataset.rate_nan", lambda: ood.perturbed_dataset(x, math.nan), Refuse(("rate", "nan"))),
        (
            "perturbed_dataset.batch_zero",
            lambda: ood.perturbed_dataset(x, 0.2, batch_size=0),
            Refuse(("batch_size", "0")),
        ),
        (
            "train_background.rate_zero_trains_a_plain_model",
            lambda: ood.train_background(tiny("glow-image"), x, rate=0.0),
            Either(anything, ("rate",)),
        ),
        (
            "train_background.rate_above_one",
            lambda: ood.train_background(tiny("glow-image"), x, rate=2.0),
            Refuse(("rate", "2")),
        ),
        (
            "train_background.lr_negative",
            lambda: ood.train_background(tiny("glow-image"), x, lr=-1.0),
            Refuse(("-1",)),
        ),
        (
            "train_background.batch_zero",
            lambda: ood.train_background(tiny("glow-image"), x, batch_size=0),
            Refuse(("batch_size", "0")),
        ),
        ("register_score.not_a_score", lambda: ood.register_score("nll"), Refuse(("ImageScore", "str"), TE)),
        (
            "register_score.duplicate",
            lambda: ood.register_score(ood.ImageScore("nll", lambda i, b, n: b, "dup")),
            Refuse(("nll",)),
        ),
        ("ImageScore.empty_name", lambda: ood.ImageScore("", lambda i, b, n: b, "x"), Refuse(("name",))),
        (
            "ImageScore.compute_not_callable",
            lambda: ood.ImageScore("s", 3, "x"),
            Refuse(("compute", "3"), TE),
        ),
        ("as_density.number", lambda: ood.as_density(3), Refuse(("int",), TE)),
        ("as_density.vector_model", lambda: ood.as_density(tiny("maf-vector")), Refuse(("image",))),
        ("format_table.empty", lambda: ood.format_table({}), Either(anything, ("table",))),
        (
            "image_batches.batch_zero",
            lambda: list(ood.image_batches(x, (8, 8, 1), batch_size=0)),
            Refuse(("batch_size", "0")),
        ),
    ]
    return [Row("ood", rid, call, e) for rid, call, e in cases]


# -- export_saved_model and the served signatures ----------------------------------------------
@functools.cache
def _served(key: str, cond: str = ""):
    import tensorflow as tf

    import tfflows

    path = fresh("sm") / "1"
    tfflows.export_saved_model(tiny(key, cond), str(path))
    return tf.saved_model.load(str(path))


def _serve(key, cond, name, **inputs):
    import tensorflow as tf

    def call():
        fn = _served(key, cond).signatures[name]
        return fn(**{k: tf.constant(v) for k, v in inputs.items()})

    return call


def _checked_outputs(result) -> str | None:
    """A served answer is fine when its numbers are finite or flagged by its ``finite`` output."""
    if isinstance(result, dict) and "finite" in result:
        flags = np.asarray(result["finite"])
        for k, v in result.items():
            a = np.asarray(v)
            if a.dtype.kind == "f":
                rows_bad = ~np.all(np.isfinite(a.reshape(len(a), -1)), axis=1) if a.ndim else ~np.isfinite(a)
                if np.any(rows_bad & flags):
                    return f"{k}: non-finite values flagged finite"
        return None
    return finite(result)


def export_rows() -> list[Row]:
    import tensorflow as tf

    import tfflows

    g = tiny("glow-image")
    ex = tfflows.export_saved_model
    IA = (tf.errors.InvalidArgumentError, ValueError, TypeError)
    cases = [
        (
            "export.max_samples_zero",
            lambda: ex(g, str(fresh("e") / "1"), max_samples=0),
            Refuse(("max_samples", "0")),
        ),
        (
            "export.max_samples_bool",
            lambda: ex(g, str(fresh("e") / "1"), max_samples=True),
            Refuse(("max_samples", "True")),
        ),
        (
            "export.max_samples_float",
            lambda: ex(g, str(fresh("e") / "1"), max_samples=2.5),
            Refuse(("max_samples", "2.5")),
        ),
        ("export.path_empty", lambda: ex(g, ""), Refuse(("path",), (ValueError, OSError))),
        (
            "export.path_is_a_file",
            lambda: ex(g, write(fresh("e") / "1", b"x")),
            Refuse(("1",), (ValueError, OSError)),
        ),
        (
            "export.under_a_file",
            lambda: ex(g, str(Path(write(fresh("e") / "f", b"x")) / "1")),
            Refuse(("f",), (ValueError, OSError)),
        ),
        ("export.idf_model", lambda: ex(_idf(), str(fresh("e") / "1")), Refuse(("IDF",), TE)),
        ("export.not_a_model", lambda: ex("model.keras", str(fresh("e") / "1")), Refuse(("str",), TE)),
        (
            "export.overwrite_string",
            lambda: ex(g, str(fresh("e") / "1"), overwrite="no"),
            Refuse(("overwrite",), TE),
        ),
    ]
    rows = [Row("export", rid, call, e) for rid, call, e in cases]
    served = [
        (
            "glow.log_prob_float32_images",
            ("glow-image", "", "log_prob", {"images": np.zeros((1, 8, 8, 1), np.float32)}),
            Refuse((("uint8", "dtype", "float"),), IA),
        ),
        (
            "glow.log_prob_no_batch_axis",
            ("glow-image", "", "log_prob", {"images": np.zeros((8, 8, 1), np.uint8)}),
            Refuse(("shape",), IA),
        ),
        (
            "glow.log_prob_empty",
            ("glow-image", "", "log_prob", {"images": np.zeros((0, 8, 8, 1), np.uint8)}),
            Handle(anything),
        ),
        (
            "glow.score_int32",
            ("glow-image", "", "score", {"images": np.zeros((1, 8, 8, 1), np.int32)}),
            Refuse((("uint8", "dtype", "int32"),), IA),
        ),
        (
            "glow.encode_wrong_channels",
            ("glow-image", "", "encode", {"images": np.zeros((1, 8, 8, 2), np.uint8)}),
            Refuse((("shape", "compatible"),), IA),
        ),
        (
            "glow.decode_float64",
            ("glow-image", "", "decode", {"latents": np.zeros((1, 64), np.float64)}),
            Refuse((("float32", "dtype", "double"),), IA),
        ),
        (
            "glow.decode_rank1",
            ("glow-image", "", "decode", {"latents": np.zeros((64,), np.float32)}),
            Refuse((("shape", "compatible"),), IA),
        ),
        (
            "glow.decode_huge",
            ("glow-image", "", "decode", {"latents": np.full((1, 64), 1e30, np.float32)}),
            Either(_checked_outputs, ("finite",), IA),
        ),
        (
            "glow.sample_int64_count",
            (
                "glow-image",
                "",
                "sample",
                {"num_samples": np.int64(2), "temperature": np.float32(1), "seed": np.int64(0)},
            ),
            Refuse((("int32", "dtype"),), IA),
        ),
        (
            "glow.sample_float_seed",
            (
                "glow-image",
                "",
                "sample",
                {"num_samples": np.int32(2), "temperature": np.float32(1), "seed": np.float32(0.5)},
            ),
            Refuse((("int64", "dtype"),), IA),
        ),
        (
            "glow.sample_temperature_1e30",
            (
                "glow-image",
                "",
                "sample",
                {"num_samples": np.int32(2), "temperature": np.float32(1e30), "seed": np.int64(0)},
            ),
            Either(_checked_outputs, ("temperature",), IA),
        ),
        (
            "glow.sample_temperature_inf",
            (
                "glow-image",
                "",
                "sample",
                {"num_samples": np.int32(2), "temperature": np.float32(np.inf), "seed": np.int64(0)},
            ),
            Refuse(("temperature",), IA),
        ),
        (
            "glow.sample_zero",
            (
                "glow-image",
                "",
                "sample",
                {"num_samples": np.int32(0), "temperature": np.float32(1), "seed": np.int64(0)},
            ),
            Handle(anything),
        ),
        (
            "glow.sample_vector_count",
            (
                "glow-image",
                "",
                "sample",
                {"num_samples": np.array([2], np.int32), "temperature": np.float32(1), "seed": np.int64(0)},
            ),
            Refuse((("shape", "compatible", "scalar"),), IA),
        ),
        (
            "glow.log_prob_float_1e30",
            ("glow-image", "", "log_prob_float", {"images": np.full((1, 8, 8, 1), 1e30, np.float32)}),
            Refuse(("pixel levels",), IA),
        ),
        (
            "glow.log_prob_float_inf",
            ("glow-image", "", "log_prob_float", {"images": np.full((1, 8, 8, 1), np.inf, np.float32)}),
            Refuse(("pixel levels",), IA),
        ),
        ("glow.missing_input", ("glow-image", "", "log_prob", {}), Refuse(("images",), IA)),
        (
            "glow.extra_input",
            (
                "glow-image",
                "",
                "log_prob",
                {"images": np.zeros((1, 8, 8, 1), np.uint8), "labels": np.zeros(1, np.int32)},
            ),
            Refuse(("labels",), IA),
        ),
        (
            "labels.out_of_range",
            (
                "glow-image",
                "labels",
                "log_prob",
                {"images": np.zeros((2, 8, 8, 1), np.uint8), "labels": np.array([0, 3], np.int32)},
            ),
            Refuse(("0..2",), IA),
        ),
        (
            "labels.negative",
            (
                "glow-image",
                "labels",
                "log_prob",
                {"images": np.zeros((2, 8, 8, 1), np.uint8), "labels": np.array([-1, 0], np.int32)},
            ),
            Refuse(("0..2",), IA),
        ),
        (
            "labels.count_mismatch",
            (
                "glow-image",
                "labels",
                "log_prob",
                {"images": np.zeros((2, 8, 8, 1), np.uint8), "labels": np.array([0, 1, 2], np.int32)},
            ),
            Refuse((("3", "batch", "rows"),), IA),
        ),
        (
            "labels.missing",
            ("glow-image", "labels", "log_prob", {"images": np.zeros((2, 8, 8, 1), np.uint8)}),
            Refuse(("labels",), IA),
        ),
        (
            "labels.float",
            (
                "glow-image",
                "labels",
                "log_prob",
                {"images": np.zeros((2, 8, 8, 1), np.uint8), "labels": np.array([0.0, 1.0], np.float32)},
            ),
            Refuse((("int32", "dtype"),), IA),
        ),
        (
            "labels.sample_mismatch",
            (
                "glow-image",
                "labels",
                "sample",
                {
                    "num_samples": np.int32(3),
                    "temperature": np.float32(1),
                    "seed": np.int64(0),
                    "labels": np.array([0, 1], np.int32),
                },
            ),
            Refuse(("labels",), IA),
        ),
        (
            "labels.decode_out_of_range",
            (
                "glow-image",
                "labels",
                "decode",
                {"latents": np.zeros((1, 64), np.float32), "labels": np.array([9], np.int32)},
            ),
            Refuse(("0..2",), IA),
        ),
        (
            "context.nan",
            (
                "maf-vector",
                "context",
                "log_prob",
                {"x": np.zeros((1, 3), np.float32), "context": np.array([[np.nan, 0.0]], np.float32)},
            ),
            Refuse(("finite",), IA),
        ),
        (
            "context.wrong_width",
            (
                "maf-vector",
                "context",
                "log_prob",
                {"x": np.zeros((1, 3), np.float32), "context": np.zeros((1, 5), np.float32)},
            ),
            Refuse((("shape", "compatible"),), IA),
        ),
        (
            "context.count_mismatch",
            (
                "maf-vector",
                "context",
                "log_prob",
                {"x": np.zeros((2, 3), np.float32), "context": np.zeros((3, 2), np.float32)},
            ),
            Refuse((("3", "batch", "rows"),), IA),
        ),
        (
            "context.sample_inf",
            (
                "maf-vector",
                "context",
                "sample",
                {
                    "num_samples": np.int32(2),
                    "temperature": np.float32(1),
                    "seed": np.int64(0),
                    "context": np.array([[np.inf, 0.0]], np.float32),
                },
            ),
            Refuse(("finite",), IA),
        ),
        (
            "vector.log_prob_nan",
            ("maf-vector", "", "log_prob", {"x": np.array([[np.nan, 0, 0]], np.float32)}),
            Either(_checked_outputs, ("finite",), IA),
        ),
        (
            "vector.log_prob_huge",
            ("maf-vector", "", "log_prob", {"x": np.full((1, 3), 3e38, np.float32)}),
            Either(_checked_outputs, ("finite",), IA),
        ),
        (
            "vector.log_prob_wrong_width",
            ("maf-vector", "", "log_prob", {"x": np.zeros((1, 4), np.float32)}),
            Refuse((("shape", "compatible"),), IA),
        ),
        (
            "vector.decode_nan",
            ("maf-vector", "", "decode", {"latents": np.array([[np.nan, 0, 0]], np.float32)}),
            Refuse(("finite",), IA),
        ),
        (
            "tarflow.sample_guidance_nan",
            (
                "tarflow-image",
                "labels",
                "sample",
                {
                    "num_samples": np.int32(1),
                    "temperature": np.float32(1),
                    "seed": np.int64(0),
                    "labels": np.array([0], np.int32),
                    "guidance": np.float32(np.nan),
                    "denoise": False,
                },
            ),
            Refuse(("guidance",), IA),
        ),
    ]
    for rid, (key, cond, name, inputs), e in served:
        rows.append(Row("saved_model", rid, _serve(key, cond, name, **inputs), e))
    return rows


# -- the codec ----------------------------------------------------------------------------
@functools.cache
def _idf():
    from tfflows.models.registry import get_model

    return get_model("idf", "image").tiny()


def _levels(n=3, top=32):
    return np.random.default_rng(7).integers(0, top, (n, 8, 8, 1)).astype(np.uint8)


@functools.cache
def _packed(layout="stream") -> bytes:
    from tfflows import codec

    return codec.compress(_idf(), _levels(), layout=layout)


def _recrc(data: bytes) -> bytes:
    return data + struct.pack("<I", zlib.crc32(data))


def _forged(**fields) -> bytes:
    """A valid stream file with header fields changed and its CRC made right again."""
    data = bytearray(_packed()[:-4])
    head = struct.Struct("<4sBBBB16sIIIII")
    values = list(head.unpack_from(data))
    names = ["magic", "version", "layout", "num_bits", "zero", "fingerprint", "h", "w", "c", "count", "crc"]
    for k, v in fields.items():
        values[names.index(k)] = v
    head.pack_into(data, 0, *values)
    return _recrc(bytes(data))


def codec_rows() -> list[Row]:
    from tfflows import codec

    m = _idf()
    E = (ValueError,)

    def flipped(i):
        b = bytearray(_packed())
        b[i % len(b)] ^= 0x10
        return bytes(b)

    cases = [
        (
            "compress.float_images",
            lambda: codec.compress(m, _levels().astype(np.float32)),
            Refuse(("float32",)),
        ),
        (
            "compress.levels_too_high",
            lambda: codec.compress(m, np.full((1, 8, 8, 1), 40, np.uint8)),
            Refuse(("40",)),
        ),
        (
            "compress.wrong_size",
            lambda: codec.compress(m, np.zeros((1, 4, 4, 1), np.uint8)),
            Refuse(("shape",)),
        ),
        (
            "compress.one_image_without_batch_axis",
            lambda: codec.compress(m, np.zeros((8, 8, 1), np.uint8)),
            Either(lambda r: None if isinstance(r, bytes) else "not bytes", ("shape",)),
        ),
        (
            "compress.rank5",
            lambda: codec.compress(m, np.zeros((1, 1, 8, 8, 1), np.uint8)),
            Refuse(("shape",)),
        ),
        (
            "compress.list_of_lists",
            lambda: codec.compress(m, _levels().tolist()),
            Either(lambda r: None if isinstance(r, bytes) else "not bytes", ("dtype",)),
        ),
        ("compress.layout_unknown", lambda: codec.compress(m, _levels(), layout="zip"), Refuse(("zip",))),
        ("compress.not_an_idf", lambda: codec.compress(tiny("glow-image"), _levels()), Refuse(("IDF",), TE)),
        (
            "compress.uint16_images",
            lambda: codec.compress(m, _levels().astype(np.uint16)),
            Refuse(("uint16",)),
        ),
        ("decompress.random_bytes", lambda: codec.decompress(m, os.urandom(300)), Refuse((), E)),
        (
            "decompress.truncated_half",
            lambda: codec.decompress(m, _packed()[: len(_packed()) // 2]),
            Refuse((("truncated", "corrupt"),), E),
        ),
        (
            "decompress.truncated_to_header",
            lambda: codec.decompress(m, _packed()[:20]),
            Refuse((("truncated", "short", "corrupt"),), E),
        ),
        ("decompress.flip_header", lambda: codec.decompress(m, flipped(6)), Refuse((), E)),
        ("decompress.flip_body", lambda: codec.decompress(m, flipped(60)), Refuse(("corrupt",), E)),
        ("decompress.flip_crc", lambda: codec.decompress(m, flipped(-1)), Refuse(("corrupt",), E)),
        (
            "decompress.png_file",
            lambda: codec.decompress(m, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100),
            Refuse(("PNG",), E),
        ),
        ("decompress.str_not_bytes", lambda: codec.decompress(m, "TFFC..."), Refuse(("str",), TE)),
        ("decompress.huge_count", lambda: codec.decompress(m, _forged(count=2**32 - 1)), Refuse((), E)),
        ("decompress.huge_height", lambda: codec.decompress(m, _forged(h=2**30)), Refuse((), E)),
        ("decompress.zero_width", lambda: codec.decompress(m, _forged(w=0)), Refuse((), E)),
        ("decompress.other_num_bits", lambda: codec.decompress(m, _forged(num_bits=8)), Refuse(("8",), E)),
        (
            "decompress.foreign_fingerprint",
            lambda: codec.decompress(m, _forged(fingerprint=b"\x01" * 16)),
            Refuse(("model",), E),
        ),
        ("decompress.future_version", lambda: codec.decompress(m, _forged(version=9)), Refuse(("9",), E)),
        ("decompress.layout_7", lambda: codec.decompress(m, _forged(layout=7)), Refuse(("7",), E)),
        (
            "decompress.index_out_of_range",
            lambda: codec.decompress(m, _packed("random_access"), index=3),
            Refuse(("3",), E),
        ),
        (
            "decompress.index_negative",
            lambda: codec.decompress(m, _packed("random_access"), index=-1),
            Refuse(("-1",), E),
        ),
        (
            "decompress.index_bool",
            lambda: codec.decompress(m, _packed("random_access"), index=True),
            Refuse(("True",), TE),
        ),
        (
            "decompress.index_on_stream",
            lambda: codec.decompress(m, _packed(), index=0),
            Either(
                lambda r: (
                    None
                    if np.asarray(r).shape == (8, 8, 1) or np.asarray(r).shape == (1, 8, 8, 1)
                    else "wrong shape"
                ),
                ("random",),
                E,
            ),
        ),
        ("decompress.empty", lambda: codec.decompress(m, b""), Refuse(("empty",), E)),
        (
            "decompress.with_other_model",
            lambda: codec.decompress(_other_idf(), _packed()),
            Refuse(("model",), E),
        ),
        ("decompress.round_trip", lambda: _round_trip(), Handle(lambda r: None if r else "not equal")),
    ]
    return [Row("codec", rid, call, e) for rid, call, e in cases]


@functools.cache
def _other_idf():
    import keras

    from tfflows.models.registry import get_model

    keras.utils.set_random_seed(99)
    other = get_model("idf", "image").tiny()
    for w in other.trainable_variables:
        w.assign(w + 0.01)
    return other


def _round_trip() -> bool:
    from tfflows import codec

    return bool(np.array_equal(codec.decompress(_idf(), _packed()), _levels()))


from audit_cli import SURFACES as _CLI  # noqa: E402

SURFACES = {"data": data_rows, "ood": ood_rows, "export": export_rows, "codec": codec_rows, **_CLI}
