"""The audit's rows by surface, and the child process that grades one surface (see audit_bad_inputs.py).

``python audit_rows.py SURFACE START LINES WORKDIR`` grades the rows of
SURFACE from index START on, one JSON line per row into LINES, then a line
``{"id": "__end__"}``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
from audit_grading import Either, Handle, Refuse, Row, entry_models, finite, finite_of, tiny, valid_x

TE = (ValueError, TypeError)


# -- the 8 flow models ------------------------------------------------------------------
def _x_inputs(model, method: str) -> list[tuple[str, object, object]]:
    """(id, x, expectation) for the data methods of ``model``."""
    s = model.spec
    x = valid_x(model)
    n = len(x)
    rows = [
        ("one_example_no_batch_axis", x[0], Either(finite, ("shape",))),
        ("trailing_axis", x[..., None], Refuse(("shape",))),
        ("strings", np.full(x.shape, "a"), Refuse(("str",), TE)),
        ("complex", x.astype(np.complex64), Refuse(("complex",), TE)),
        ("bools", x > 1, Either(finite_of((n,)), ("bool",), TE)),
        ("float16", x.astype(np.float16), Either(finite_of((n,)), ("float16",), TE)),
        ("float64", x.astype(np.float64), Handle(finite_of((n,)))),
        ("nested_list", x.tolist(), Handle(finite_of((n,)))),
        ("none", None, Refuse(("None",), TE)),
        ("python_scalar", 0.5, Refuse(("shape",), TE)),
        ("one_neg_inf", np.where(np.arange(x.size).reshape(x.shape) == 1, -np.inf, x), Refuse(("finite",))),
        ("empty_batch", x[:0], Handle(finite_of((0,)))),
        ("ragged_list", [x[0].tolist(), x[1].ravel()[:2].tolist()], Refuse(("x",), TE)),
        ("object_array", np.array(x, dtype=object), Either(finite_of((n,)), ("object",), TE)),
    ]
    if s.data_kind == "image":
        top = 2**s.num_bits
        rows += [
            ("int64_beyond_8_bits", np.full(x.shape, 300, np.int64), Refuse(("300",))),
            ("uint8_pixels", np.full(x.shape, 255, np.uint8), Handle(finite_of((n,)))),
            ("float_level_just_below_top", np.full(x.shape, top - 1e-3, np.float32), Handle(finite_of((n,)))),
            (
                "float_1e30",
                np.full(x.shape, 1e30, np.float32),
                Refuse(("1e+30",)) if method != "encode" else Either(finite, ("1e+30",)),
            ),
            (
                "wrong_channels",
                np.zeros((n, *s.event_shape[:2], s.event_shape[2] + 2), np.float32),
                Refuse(("shape",)),
            ),
            (
                "transposed_nchw",
                np.zeros((n, s.event_shape[2], *s.event_shape[:2]), np.float32),
                Refuse(("shape",)),
            ),
        ]
    else:
        rows += [
            (
                "minus_3e38",
                np.full(x.shape, -3e38, np.float32),
                Either(finite_of((n,)), (("3e+38", "overflow"),)),
            ),
            ("int32_values", np.ones(x.shape, np.int32), Either(finite_of((n,)), ("int32",))),
            ("one_extra_feature", np.zeros((n, s.event_shape[0] + 1), np.float32), Refuse(("shape",))),
            (
                "rank3_batch",
                np.zeros((n, 2, s.event_shape[0]), np.float32),
                Either(finite_of((n, 2)), ("shape",)),
            ),
        ]
    return rows


def model_rows() -> list[Row]:
    rows: list[Row] = []
    for key in entry_models():
        model = tiny(key)
        for method in ("log_prob", "encode", "bits_per_dim"):
            for rid, x, expect in _x_inputs(model, method):
                if method == "encode" and isinstance(expect, (Handle, Either)):
                    n = len(x) if isinstance(x, np.ndarray) and x.ndim > 0 else None
                    if isinstance(expect, Handle) and n is not None:
                        expect = Handle(finite_of((n, model.spec.num_dims)) if n == 0 else finite)
                    elif isinstance(expect, Either):
                        expect = Either(finite, expect.subs, expect.types)
                    else:
                        expect = Handle(finite)
                rows.append(
                    Row(
                        "models",
                        f"{key}.{method}.{rid}",
                        (lambda m=model, me=method, v=x: getattr(m, me)(v)),
                        expect,
                    )
                )
        rows += _decode_rows(key, model) + _sample_rows(key, model) + _init_rows(key)
    return rows


def _decode_rows(key, model) -> list[Row]:
    d = model.spec.num_dims
    z = np.random.default_rng(0).standard_normal((2, d)).astype("float32")
    cases = [
        ("one_too_many", np.zeros((2, d + 1), np.float32), Refuse(("shape",))),
        ("no_batch_axis", z[0], Either(finite, ("shape",))),
        ("strings", np.full((2, d), "z"), Refuse(("str",), TE)),
        ("one_nan", np.where(np.arange(2 * d).reshape(2, d) == 3, np.nan, z), Refuse(("finite",))),
        ("huge_1e20", np.full((2, d), 1e20, np.float32), Either(finite, ("1e+20", "overflow", "finite"))),
        ("float64", z.astype(np.float64), Handle(finite)),
        (
            "image_shaped_latents",
            np.zeros((2, *model.spec.event_shape), np.float32),
            Either(finite, ("shape",)),
        ),
    ]
    return [Row("models", f"{key}.decode.{rid}", (lambda v=z_: model.decode(v)), e) for rid, z_, e in cases]


def _sample_rows(key, model) -> list[Row]:
    n_ok = Handle(finite_of((3, *model.spec.event_shape)))
    cases = [
        ("num_samples_string", lambda: model.sample("3"), Refuse(("num_samples", "'3'"), TE)),
        ("num_samples_numpy_int", lambda: model.sample(np.int64(3), seed=0), n_ok),
        ("num_samples_float_whole", lambda: model.sample(3.0, seed=0), Either(n_ok.check, ("num_samples",))),
        ("num_samples_none", lambda: model.sample(None), Refuse(("num_samples", "None"), TE)),
        ("num_samples_list", lambda: model.sample([2, 2]), Refuse(("num_samples",), TE)),
        (
            "temperature_string",
            lambda: model.sample(2, temperature="hot"),
            Refuse(("temperature", "hot"), TE),
        ),
        (
            "temperature_1e30",
            lambda: model.sample(2, temperature=1e30, seed=0),
            Either(finite, ("temperature",)),
        ),
        ("temperature_inf", lambda: model.sample(2, temperature=math.inf), Refuse(("temperature", "inf"))),
        ("temperature_list", lambda: model.sample(2, temperature=[0.5, 1.0]), Refuse(("temperature",), TE)),
        ("seed_string", lambda: model.sample(2, seed="abc"), Refuse(("seed", "abc"), TE)),
        ("seed_negative", lambda: model.sample(2, seed=-1), Either(finite, ("seed",))),
        ("seed_float", lambda: model.sample(2, seed=1.5), Refuse(("seed", "1.5"), TE)),
        ("clip_latent_negative", lambda: model.sample(2, clip_latent=-2.0), Refuse(("clip_latent", "-2"))),
        ("clip_latent_inf", lambda: model.sample(2, clip_latent=math.inf), Refuse(("clip_latent", "inf"))),
        ("clip_output_string", lambda: model.sample(2, clip_output="yes"), Refuse(("clip_output",), TE)),
        ("context_given_unconditional", lambda: model.sample(2, context=[1, 2]), Refuse(("conditional",))),
        ("zero_samples", lambda: model.sample(0), Handle(finite_of((0, *model.spec.event_shape)))),
    ]
    return [Row("models", f"{key}.sample.{rid}", call, e) for rid, call, e in cases]


def _init_rows(key) -> list[Row]:
    import tensorflow as tf

    def fresh_model():
        return entry_models()[key]()

    def shape_of():
        return fresh_model().spec.event_shape

    cases = [
        (
            "nan_batch",
            lambda: fresh_model().initialize(np.full((4, *shape_of()), np.nan, np.float32)),
            Refuse(("finite",)),
        ),
        ("wrong_shape", lambda: fresh_model().initialize(np.zeros((4, 7), np.float32)), Refuse(("shape",))),
        (
            "num_batches_zero",
            lambda: (m := fresh_model()).initialize(valid_x(m, 4), num_batches=0),
            Refuse(("num_batches", "0")),
        ),
        (
            "num_batches_string",
            lambda: (m := fresh_model()).initialize(valid_x(m, 4), num_batches="2"),
            Refuse(("num_batches",), TE),
        ),
        ("string_data", lambda: fresh_model().initialize("images.npy"), Refuse(("str",), TE)),
        (
            "dataset_of_strings",
            lambda: fresh_model().initialize(tf.data.Dataset.from_tensor_slices(["a", "b"]).batch(2)),
            Refuse(("str",), TE),
        ),
        (
            "empty_dataset",
            lambda: (m := fresh_model()).initialize(
                tf.data.Dataset.from_tensor_slices(valid_x(m, 4)).take(0).batch(2)
            ),
            Refuse((("empty", "no batch", "none"),)),
        ),
    ]
    return [Row("models", f"{key}.initialize.{rid}", call, e) for rid, call, e in cases]


# -- constructors -----------------------------------------------------------------------
def constructor_rows() -> list[Row]:
    import tfflows

    image = {"Glow": tfflows.Glow, "RealNVP": tfflows.RealNVP, "TarFlow": tfflows.TarFlow, "Jet": tfflows.Jet}
    vector = {
        "VectorRealNVP": tfflows.VectorRealNVP,
        "VectorGlow": tfflows.VectorGlow,
        "VectorNSF": tfflows.VectorNSF,
        "VectorMAF": tfflows.VectorMAF,
    }
    small = {"width": 8}
    rows: list[Row] = []
    common = [
        ("width_zero", {"width": 0}, Refuse(("width", "0"))),
        ("width_string", {"width": "8"}, Refuse(("width", "'8'"), TE)),
        ("width_float", {"width": 8.5}, Refuse(("width", "8.5"), TE)),
        ("num_classes_zero", {"num_classes": 0}, Refuse(("num_classes", "0"))),
        ("num_classes_float", {"num_classes": 2.5}, Refuse(("num_classes", "2.5"), TE)),
        ("context_dim_negative", {"context_dim": -2}, Refuse(("context_dim", "-2"))),
        ("dtype_int32", {"dtype": "int32"}, Refuse(("dtype", "int32"), TE)),
        ("dtype_float16", {"dtype": "float16"}, Refuse(("float16",), TE)),
        ("backprop_unknown", {"backprop": "checkpoint"}, Refuse(("backprop", "checkpoint"))),
        ("validate_args_string", {"validate_args": "yes"}, Refuse(("validate_args", "yes"))),
        ("unknown_keyword", {"num_layerz": 3}, Refuse(("num_layerz",), TE)),
    ]
    for name, cls in image.items():
        base = {"event_shape": (8, 8, 1), "num_bits": 5, **small}
        if name in ("TarFlow", "Jet"):
            base.update(patch_size=4, heads=2, depth=1)
        cases = common + [
            ("event_shape_negative", {"event_shape": (8, -8, 1)}, Refuse(("event_shape", "-8"))),
            ("event_shape_zero", {"event_shape": (0, 8, 1)}, Refuse(("event_shape",))),
            ("event_shape_string", {"event_shape": "8x8"}, Refuse(("event_shape", "8x8"), TE)),
            ("event_shape_floats", {"event_shape": (8.0, 8.5, 1.0)}, Refuse(("event_shape",), TE)),
            ("num_bits_zero", {"num_bits": 0}, Refuse(("num_bits", "0"))),
            ("num_bits_17", {"num_bits": 17}, Refuse(("num_bits", "17"))),
            ("num_bits_float", {"num_bits": 4.5}, Refuse(("num_bits", "4.5"), TE)),
        ]
        if name in ("Glow", "RealNVP"):
            cases.append(("num_levels_too_many", {"num_levels": 6}, Refuse(("num_levels", "6"))))
        for rid, kw, e in cases:
            rows.append(Row("constructors", f"{name}.{rid}", (lambda c=cls, k={**base, **kw}: c(**k)), e))
    for name, cls in vector.items():
        base = {"event_shape": 3, **small}
        cases = common + [
            ("event_shape_zero", {"event_shape": 0}, Refuse(("event_shape", "0"))),
            ("event_shape_image", {"event_shape": (4, 4, 1)}, Refuse(("event_shape",))),
            ("event_shape_float", {"event_shape": 2.5}, Refuse(("event_shape", "2.5"), TE)),
            ("num_steps_negative", {"num_steps": -1}, Refuse(("num_steps", "-1"))),
            ("depth_zero", {"depth": 0}, Refuse(("depth", "0"))),
            ("seed_string", {"seed": "x"}, Refuse(("seed",), TE)),
        ]
        if name == "VectorNSF":
            cases += [
                ("bound_negative", {"bound": -5.0}, Refuse(("bound", "-5"))),
                ("num_bins_one", {"num_bins": 1}, Refuse(("num_bins", "1"))),
            ]
        if name == "VectorMAF":
            cases += [
                ("ordering_unknown", {"ordering": "zigzag"}, Refuse(("ordering", "zigzag"))),
                ("direction_unknown", {"direction": "both"}, Refuse(("direction", "both"))),
                ("transform_unknown", {"transform": "cubic"}, Refuse(("transform", "cubic"))),
            ]
        if name in ("VectorRealNVP",):
            cases.append(
                ("permutation_unknown", {"permutation": "random"}, Refuse(("permutation", "random")))
            )
        for rid, kw, e in cases:
            rows.append(Row("constructors", f"{name}.{rid}", (lambda c=cls, k={**base, **kw}: c(**k)), e))
    return rows


# -- contexts ---------------------------------------------------------------------------
def context_rows() -> list[Row]:
    rows: list[Row] = []
    for key in entry_models():
        lab = tiny(key, "labels")
        x = valid_x(lab)
        cases = [
            ("labels_fractional", [0.5, 1.0], Refuse(("label", ("0.5", "float")), TE)),
            ("labels_column", np.array([[0], [1]]), Either(finite_of((2,)), ("shape",))),
            ("labels_strings", ["cat", "dog"], Refuse(("label",), TE)),
            ("labels_three_for_two", [0, 1, 2], Refuse(("3", "2"))),
            ("labels_huge_negative", np.array([0, -(2**40)], np.int64), Refuse(("0..2",))),
            ("labels_one_hot", np.eye(3, dtype=np.float32)[[0, 1]], Either(finite_of((2,)), ("label",), TE)),
            ("labels_scalar", 1, Either(finite_of((2,)), ("label",))),
            ("labels_uint8_255", np.array([0, 255], np.uint8), Refuse(("0..2", "255"))),
            ("labels_float_nan", np.array([0.0, np.nan], np.float32), Refuse(("label",), TE)),
        ]
        for rid, c, e in cases:
            rows.append(
                Row(
                    "contexts", f"{key}.log_prob.{rid}", (lambda m=lab, v=c, x=x: m.log_prob(x, context=v)), e
                )
            )
        rows.append(
            Row(
                "contexts",
                f"{key}.sample.labels_out_of_range",
                (lambda m=lab: m.sample(2, context=[0, 7])),
                Refuse(("0..2", "7")),
            )
        )
        rows.append(
            Row(
                "contexts",
                f"{key}.sample.labels_count_mismatch",
                (lambda m=lab: m.sample(2, context=[0, 1, 2])),
                Refuse(("3",)),
            )
        )
        rows.append(
            Row(
                "contexts",
                f"{key}.sample.labels_missing",
                (lambda m=lab: m.sample(2)),
                Refuse(("conditional",)),
            )
        )
        vec = tiny(key, "context")
        x = valid_x(vec)
        cases = [
            ("context_wrong_width", np.zeros((2, 3), np.float32), Refuse(("context", "3"))),
            ("context_inf", np.array([[0.0, np.inf], [0, 0]], np.float32), Refuse(("finite",))),
            ("context_rank1", np.zeros((2,), np.float32), Either(finite_of((2,)), ("shape",))),
            ("context_int", np.ones((2, 2), np.int32), Either(finite_of((2,)), ("int32",))),
            ("context_strings", np.full((2, 2), "a"), Refuse(("context",), TE)),
            ("context_three_rows", np.zeros((3, 2), np.float32), Refuse(("3", "2"))),
            ("context_missing", None, Refuse(("context",))),
            ("context_1e30", np.full((2, 2), 1e30, np.float32), Either(finite_of((2,)), ("context",))),
            ("context_labels_given", np.array([0, 1]), Either(finite_of((2,)), ("context",))),
        ]
        for rid, c, e in cases:
            rows.append(
                Row(
                    "contexts", f"{key}.log_prob.{rid}", (lambda m=vec, v=c, x=x: m.log_prob(x, context=v)), e
                )
            )
        rows.append(
            Row(
                "contexts",
                f"{key}.decode.context_nan",
                (
                    lambda m=vec: m.decode(
                        np.zeros((1, m.spec.num_dims), np.float32),
                        context=np.array([[np.nan, 0.0]], np.float32),
                    )
                ),
                Refuse(("finite",)),
            )
        )
    return rows


from audit_surfaces import SURFACES as _MORE  # noqa: E402

SURFACES = {"constructors": constructor_rows, "contexts": context_rows, "models": model_rows, **_MORE}

if __name__ == "__main__":
    surface, start, lines, workdir = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TFFLOWS_AUDIT_TMP"] = str(workdir / "rows")
    warnings.simplefilter("ignore")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from audit_grading import grade

    rows = SURFACES[surface]()
    (workdir / f"{surface}.ids.json").write_text(json.dumps([r.id for r in rows]))
    with open(lines, "a") as f:
        for row in rows[start:]:
            g, note = grade(row)
            f.write(json.dumps({"surface": row.surface, "id": row.id, "grade": g, "note": note}) + "\n")
            f.flush()
        f.write(json.dumps({"id": "__end__"}) + "\n")
