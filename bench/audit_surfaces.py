"""The audit's rows beyond the models: TFP, training, data, OOD, export, SavedModel, codec, registry, ..."""

from __future__ import annotations

import functools
import math

import numpy as np
from audit_grading import Either, Handle, Refuse, Row, anything, finite, finite_of, fresh, tiny, valid_x

TE = (ValueError, TypeError)


def _glow():
    return tiny("glow-image")


def _maf():
    return tiny("maf-vector")


# -- the TFP distribution and bijector ------------------------------------------------------
def distribution_rows() -> list[Row]:
    rows = []
    for key in ("glow-image", "maf-vector", "tarflow-image", "nsf-vector"):
        rows += _distribution_rows(key)
    return rows


def _distribution_rows(key: str) -> list[Row]:
    rows = []
    if True:
        m = tiny(key)
        x = valid_x(m, 2)
        d = m.spec.num_dims
        shape = m.spec.event_shape
        cases = [
            (
                "log_prob_wrong_event",
                lambda m=m: m.distribution.log_prob(np.zeros((2, d + 1), np.float32)),
                Refuse(("shape",)),
            ),
            (
                "log_prob_strings",
                lambda m=m: m.distribution.log_prob(np.full((2, *shape), "a")),
                Refuse(("str",), TE),
            ),
            (
                "log_prob_nan",
                lambda m=m: m.distribution.log_prob(np.full((2, *shape), np.nan, np.float32)),
                Refuse(("finite",)),
            ),
            (
                "log_prob_sample_shape_2x3",
                lambda m=m: m.distribution.log_prob(np.stack([valid_x(m, 3)] * 2)),
                Handle(finite_of((2, 3))),
            ),
            ("prob_none", lambda m=m: m.distribution.prob(None), Refuse(("None",), TE)),
            ("sample_negative", lambda m=m: m.distribution.sample(-2), Refuse(("-2",), TE)),
            ("sample_string", lambda m=m: m.distribution.sample("two"), Refuse(("two",), TE)),
            (
                "sample_shape_2x3",
                lambda m=m: m.distribution.sample((2, 3), seed=1),
                Handle(finite_of((2, 3, *shape))),
            ),
            ("sample_float", lambda m=m: m.distribution.sample(2.5), Refuse(("2.5",), TE)),
            (
                "bijector_forward_wrong_size",
                lambda m=m: m.bijector.forward(np.zeros((2, d + 3), np.float32)),
                Refuse(("shape",)),
            ),
            (
                "bijector_inverse_nan",
                lambda m=m: m.bijector.inverse(np.full((2, *shape), np.nan, np.float32)),
                Refuse(("finite",)),
            ),
            (
                "bijector_fldj_event_ndims_5",
                lambda m=m: m.bijector.forward_log_det_jacobian(np.zeros((2, d), np.float32), event_ndims=5),
                Refuse(("event_ndims",), TE),
            ),
            (
                "bijector_ildj_event_ndims_0",
                lambda m=m: m.bijector.inverse_log_det_jacobian(x, event_ndims=0),
                Refuse(("event_ndims",), TE),
            ),
            (
                "bijector_forward_strings",
                lambda m=m: m.bijector.forward(np.full((2, d), "z")),
                Refuse(("str",), TE),
            ),
            (
                "distribution_for_context_unconditional",
                lambda m=m: m.distribution_for([0, 1]),
                Refuse(("conditional",)),
            ),
            (
                "cdf_not_a_flow_method",
                lambda m=m: m.distribution.cdf(x),
                Refuse((), (NotImplementedError, ValueError)),
            ),
        ]
        for rid, call, e in cases:
            rows.append(Row("distribution", f"{key}.{rid}", call, e))
        lab = tiny(key, "labels")
        rows += [
            Row(
                "distribution",
                f"{key}.labels_out_of_range",
                lambda lab=lab: lab.distribution_for([0, 9]).log_prob(valid_x(lab, 2)),
                Refuse(("0..2", "9")),
            ),
            Row(
                "distribution",
                f"{key}.labels_batch_vs_x",
                lambda lab=lab: lab.distribution_for([0, 1, 2]).log_prob(valid_x(lab, 2)),
                Refuse((("3", "broadcast", "shape"),)),
            ),
            Row(
                "distribution",
                f"{key}.labels_float",
                lambda lab=lab: lab.distribution_for([0.5]),
                Refuse(("label",), TE),
            ),
            Row(
                "distribution",
                f"{key}.labels_sample_shape",
                lambda lab=lab: lab.distribution_for([0, 1]).sample(3, seed=0),
                Handle(finite_of((3, 2, *lab.spec.event_shape))),
            ),
        ]
    return rows


# -- training: fit / evaluate / predict / validate_args --------------------------------------
@functools.cache
def _compiled(key: str, cond: str = ""):
    m = tiny(key, cond)
    m.compile(optimizer=__import__("tfflows").make_optimizer(1e-4))
    return m


def training_rows() -> list[Row]:

    rows = []
    for key in ("glow-image", "maf-vector", "tarflow-image"):
        rows += _fit_rows(key)
    return rows + _validate_rows()


def _fit_rows(key: str) -> list[Row]:
    import tensorflow as tf

    rows = []
    if True:
        m = _compiled(key)
        x = valid_x(m, 8)
        shape = m.spec.event_shape
        cases = [
            (
                "fit_wrong_shape",
                lambda m=m: m.fit(np.zeros((8, 5), np.float32), epochs=1, verbose=0),
                Refuse(("shape",)),
            ),
            (
                "fit_strings",
                lambda m=m: m.fit(np.full((4, *shape), "a"), epochs=1, verbose=0),
                Refuse(("str",), TE),
            ),
            (
                "fit_y_on_unconditional",
                lambda m=m: m.fit(x, np.arange(8), epochs=1, verbose=0),
                Refuse(("conditional",)),
            ),
            (
                "fit_sample_weight_negative",
                lambda m=m: m.fit(x, sample_weight=-np.ones(8), epochs=1, verbose=0),
                Refuse(("sample_weight",)),
            ),
            (
                "fit_sample_weight_nan",
                lambda m=m: m.fit(x, sample_weight=np.full(8, np.nan), epochs=1, verbose=0),
                Refuse(("sample_weight",)),
            ),
            (
                "fit_sample_weight_short",
                lambda m=m: m.fit(x, sample_weight=np.ones(3), epochs=1, verbose=0),
                Refuse(("sample_weight", "3")),
            ),
            (
                "fit_sample_weight_2d",
                lambda m=m: m.fit(x, sample_weight=np.ones((8, 2)), epochs=1, verbose=0),
                Refuse(("sample_weight",)),
            ),
            (
                "fit_batch_size_zero",
                lambda m=m: m.fit(x, batch_size=0, epochs=1, verbose=0),
                Refuse(("batch_size",), TE),
            ),
            (
                "fit_dataset_of_wrong_shape",
                lambda m=m: m.fit(
                    tf.data.Dataset.from_tensor_slices(np.zeros((4, 7), np.float32)).batch(2),
                    epochs=1,
                    verbose=0,
                ),
                Refuse(("shape",)),
            ),
            (
                "fit_empty_array",
                lambda m=m: m.fit(x[:0], epochs=1, verbose=0),
                Refuse((("empty", "no data", "0 examples", "no batch"),)),
            ),
            (
                "evaluate_wrong_shape",
                lambda m=m: m.evaluate(np.zeros((4, 7), np.float32), verbose=0),
                Refuse(("shape",)),
            ),
            (
                "evaluate_nan",
                lambda m=m: m.evaluate(np.full((4, *shape), np.nan, np.float32), verbose=0),
                Either(finite, ("finite", "NaN")),
            ),
            (
                "predict_wrong_shape",
                lambda m=m: m.predict(np.zeros((4, 7), np.float32), verbose=0),
                Refuse(("shape",)),
            ),
            (
                "predict_nan",
                lambda m=m: m.predict(np.full((4, *shape), np.nan, np.float32), verbose=0),
                Either(finite, ("finite", "NaN")),
            ),
            (
                "fit_steps_per_epoch_zero",
                lambda m=m: m.fit(x, epochs=1, steps_per_epoch=0, verbose=0),
                Refuse(("steps_per_epoch",), TE),
            ),
        ]
        for rid, call, e in cases:
            rows.append(Row("training", f"{key}.{rid}", call, e))
        lab = _compiled(key, "labels")
        xl = valid_x(lab, 8)
        rows += [
            Row(
                "training",
                f"{key}.fit_labels_out_of_range",
                lambda lab=lab: lab.fit(xl, np.full(8, 5), epochs=1, verbose=0),
                Refuse(("0..2",), (ValueError, tf.errors.InvalidArgumentError)),
            ),
            Row(
                "training",
                f"{key}.fit_labels_missing",
                lambda lab=lab: lab.fit(xl, epochs=1, verbose=0),
                Refuse(("conditional",)),
            ),
            Row(
                "training",
                f"{key}.fit_labels_float",
                lambda lab=lab: lab.fit(xl, np.full(8, 0.5), epochs=1, verbose=0),
                Refuse(("label",), TE),
            ),
        ]
    return rows


def _validate_rows() -> list[Row]:
    import tensorflow as tf

    rows = []
    for key in ("glow-image", "maf-vector", "realnvp-image", "jet-image"):
        from audit_grading import entry_models

        m = entry_models()[key](validate_args=True)
        m.initialize(valid_x(m, 8))
        shape = m.spec.event_shape
        fn = tf.function(lambda x, m=m: m.log_prob(x))
        fz = tf.function(lambda z, m=m: m.decode(z))
        bad_x = np.full((2, *shape), np.nan, np.float32)
        IA = (tf.errors.InvalidArgumentError, ValueError)
        rows += [
            Row(
                "training",
                f"{key}.validate_args.log_prob_nan_in_graph",
                lambda fn=fn, b=bad_x: fn(b),
                Refuse(("finite",), IA),
            ),
            Row(
                "training",
                f"{key}.validate_args.decode_inf_in_graph",
                lambda fz=fz, m=m: fz(np.full((2, m.spec.num_dims), np.inf, np.float32)),
                Refuse(("finite",), IA),
            ),
            Row(
                "training",
                f"{key}.validate_args.valid_in_graph",
                lambda fn=fn, m=m: fn(valid_x(m, 2)),
                Handle(finite_of((2,))),
            ),
        ]
        if m.spec.data_kind == "image":
            rows.append(
                Row(
                    "training",
                    f"{key}.validate_args.levels_in_graph",
                    lambda fn=fn, m=m: fn(
                        np.full((2, *m.spec.event_shape), 2.0**m.spec.num_bits + 3, np.float32)
                    ),
                    Refuse(("pixel levels",), IA),
                )
            )
        lab = entry_models()[key](validate_args=True, num_classes=3)
        fl = tf.function(lambda x, c, m=lab: m.log_prob(x, context=c))
        rows.append(
            Row(
                "training",
                f"{key}.validate_args.labels_in_graph",
                lambda fl=fl, lab=lab: fl(valid_x(lab, 2), tf.constant([0, 4])),
                Refuse(("0..2",), IA),
            )
        )
    return rows


# -- make_optimizer, ScheduledAdam, callbacks ---------------------------------------------------
def optimizer_rows() -> list[Row]:
    import tfflows
    from tfflows.callbacks import (
        FiniteCheckpoint,
        SampleCheck,
        SampleGrid,
        TimeLimit,
        density_array,
        samples_picture,
        temperature_label,
    )
    from tfflows.training import WarmupSchedule

    mo = tfflows.make_optimizer
    cases = [
        ("make_optimizer.lr_string", lambda: mo("1e-3"), Refuse(("learning_rate", "1e-3"), TE)),
        ("make_optimizer.lr_bool", lambda: mo(True), Refuse(("learning_rate", "True"), TE)),
        ("make_optimizer.lr_list", lambda: mo([1e-3]), Refuse(("learning_rate",), TE)),
        ("make_optimizer.clipnorm_string", lambda: mo(1e-3, clipnorm="5"), Refuse(("clipnorm", "'5'"), TE)),
        ("make_optimizer.clipnorm_bool", lambda: mo(1e-3, clipnorm=True), Refuse(("clipnorm", "True"), TE)),
        (
            "make_optimizer.warmup_bool",
            lambda: mo(1e-3, warmup_steps=True),
            Refuse(("warmup_steps", "True"), TE),
        ),
        (
            "make_optimizer.warmup_string",
            lambda: mo(1e-3, warmup_steps="10"),
            Refuse(("warmup_steps", "'10'"), TE),
        ),
        ("make_optimizer.decay_string", lambda: mo(1e-3, decay_steps="100"), Refuse(("decay_steps",), TE)),
        (
            "make_optimizer.decay_shorter_than_warmup",
            lambda: mo(1e-3, warmup_steps=100, decay_steps=10),
            Either(anything, ("decay_steps",)),
        ),
        ("make_optimizer.unknown_keyword", lambda: mo(1e-3, beta_3=0.9), Refuse(("beta_3",), TE)),
        (
            "make_optimizer.clipvalue_and_clipnorm",
            lambda: mo(1e-3, clipvalue=-1.0),
            Refuse(("clipvalue",), TE),
        ),
        (
            "ScheduledAdam.lr_negative",
            lambda: tfflows.ScheduledAdam(learning_rate=-1.0),
            Refuse(("learning_rate", "-1")),
        ),
        (
            "ScheduledAdam.lr_nan",
            lambda: tfflows.ScheduledAdam(learning_rate=math.nan),
            Refuse(("learning_rate", "nan")),
        ),
        (
            "ScheduledAdam.lr_string",
            lambda: tfflows.ScheduledAdam(learning_rate="fast"),
            Refuse(("learning_rate", "fast"), TE),
        ),
        (
            "ScheduledAdam.lr_zero",
            lambda: tfflows.ScheduledAdam(learning_rate=0.0),
            Refuse(("learning_rate", "0")),
        ),
        ("WarmupSchedule.negative_peak", lambda: WarmupSchedule(-1e-3, 10), Refuse(("-0.001",), TE)),
        ("WarmupSchedule.nan_peak", lambda: WarmupSchedule(math.nan, 10), Refuse(("nan",), TE)),
        ("WarmupSchedule.negative_warmup", lambda: WarmupSchedule(1e-3, -5), Refuse(("-5",), TE)),
        ("SampleCheck.negative", lambda: SampleCheck(-3), Refuse(("num_samples", "-3"))),
        ("SampleCheck.fraction", lambda: SampleCheck(2.5), Refuse(("num_samples", "2.5"))),
        (
            "SampleCheck.temperature_nan",
            lambda: SampleCheck(4, temperature=math.nan),
            Refuse(("temperature", "nan")),
        ),
        (
            "SampleCheck.temperature_negative",
            lambda: SampleCheck(4, temperature=-1.0),
            Refuse(("temperature", "-1")),
        ),
        ("SampleCheck.seed_string", lambda: SampleCheck(4, seed="s"), Refuse(("seed", "'s'"), TE)),
        (
            "SampleGrid.no_temperatures",
            lambda: SampleGrid(str(fresh("g")), temperatures=[]),
            Refuse(("temperatures",)),
        ),
        (
            "SampleGrid.temperature_nan",
            lambda: SampleGrid(str(fresh("g")), temperatures=[math.nan]),
            Refuse(("temperature", "nan")),
        ),
        ("SampleGrid.per_row_zero", lambda: SampleGrid(str(fresh("g")), per_row=0), Refuse(("per_row", "0"))),
        (
            "SampleGrid.num_bits_zero",
            lambda: SampleGrid(str(fresh("g")), num_bits=0),
            Refuse(("num_bits", "0")),
        ),
        ("SampleGrid.folder_none", lambda: SampleGrid(None), Refuse(("folder", "None"), TE)),
        (
            "SampleGrid.value_range_reversed",
            lambda: SampleGrid(str(fresh("g")), value_range=(1.0, -1.0)),
            Refuse(("value_range",)),
        ),
        ("TimeLimit.zero", lambda: TimeLimit(0), Refuse(("seconds", "0"))),
        ("TimeLimit.negative", lambda: TimeLimit(-5), Refuse(("seconds", "-5"))),
        ("TimeLimit.nan", lambda: TimeLimit(math.nan), Refuse(("seconds", "nan"))),
        ("TimeLimit.string", lambda: TimeLimit("10"), Refuse(("seconds", "'10'"), TE)),
        (
            "FiniteCheckpoint.keep_zero",
            lambda: FiniteCheckpoint(str(fresh("c") / "e{epoch}.keras"), keep=0),
            Refuse(("keep", "0")),
        ),
        (
            "FiniteCheckpoint.not_keras",
            lambda: FiniteCheckpoint(str(fresh("c") / "e.txt")),
            Refuse((".keras",)),
        ),
        (
            "density_array.three_columns_first_two_drawn",
            lambda: density_array(np.zeros((10, 3))),
            Either(anything, ("points",)),
        ),
        ("density_array.rank3_points", lambda: density_array(np.zeros((10, 2, 2))), Refuse(("points",))),
        ("density_array.bins_zero", lambda: density_array(np.zeros((10, 2)), bins=0), Refuse(("bins", "0"))),
        (
            "density_array.extent_negative",
            lambda: density_array(np.zeros((10, 2)), extent=-1.0),
            Refuse(("extent", "-1")),
        ),
        (
            "density_array.nan_points",
            lambda: density_array(np.full((10, 2), np.nan)),
            Either(anything, ("finite",)),
        ),
        ("temperature_label.nan", lambda: temperature_label(math.nan), Refuse(("temperature", "nan"))),
        ("samples_picture.no_temperatures", lambda: samples_picture(_glow(), []), Refuse(("temperatures",))),
        (
            "samples_picture.per_row_zero",
            lambda: samples_picture(_glow(), [1.0], per_row=0),
            Refuse(("per_row", "0")),
        ),
        (
            "samples_picture.num_bits_mismatch",
            lambda: samples_picture(_glow(), [1.0], num_bits=3),
            Either(anything, ("num_bits",)),
        ),
    ]
    return [Row("optim_callbacks", rid, call, e) for rid, call, e in cases]


# -- the registry ------------------------------------------------------------------------
def registry_rows() -> list[Row]:
    import tfflows
    from tfflows.models.registry import (
        BuildOptions,
        ModelEntry,
        entries,
        get_model,
        model_names,
        register_model,
    )

    def entry(**kw):
        base = dict(
            name="audit-flow",
            data_kind="vector",
            model_class=tfflows.VectorMAF,
            build=lambda o: None,
            tiny=lambda **c: None,
        )
        return ModelEntry(**{**base, **kw})

    cases = [
        ("entry_name_empty", lambda: entry(name=""), Refuse(("name",))),
        ("entry_name_not_string", lambda: entry(name=3), Refuse(("name", "3"))),
        ("entry_name_spaces", lambda: entry(name=" flow "), Refuse(("name",))),
        ("entry_kind_audio", lambda: entry(data_kind="audio"), Refuse(("data_kind", "audio"))),
        (
            "entry_conditioning_unknown",
            lambda: entry(conditioning=("labels",)),
            Refuse(("conditioning", "labels")),
        ),
        ("entry_model_class_not_a_class", lambda: entry(model_class=3), Refuse(("model_class", "3"), TE)),
        ("entry_build_not_callable", lambda: entry(build="glow"), Refuse(("build", "glow"), TE)),
        ("entry_tiny_not_callable", lambda: entry(tiny=None), Refuse(("tiny", "None"), TE)),
        ("entry_train_not_callable", lambda: entry(train=5), Refuse(("train", "5"), TE)),
        (
            "entry_conditioning_string",
            lambda: entry(conditioning="num_classes"),
            Refuse(("conditioning",), TE),
        ),
        (
            "register_duplicate_builtin",
            lambda: register_model(entry(name="glow", data_kind="image")),
            Refuse(("glow", "overwrite")),
        ),
        ("register_not_an_entry", lambda: register_model("glow"), Refuse(("ModelEntry", "str"), TE)),
        ("get_model_unknown", lambda: get_model("flowy", "image"), Refuse(("flowy",))),
        ("get_model_wrong_kind", lambda: get_model("maf", "image"), Refuse(("maf", "image"))),
        ("get_model_kind_audio", lambda: get_model("glow", "audio"), Refuse(("audio",))),
        ("entries_kind_audio", lambda: entries("audio"), Refuse(("audio",))),
        ("model_names_kind_audio", lambda: model_names("audio"), Refuse(("audio",))),
        (
            "build_options_no_bits",
            lambda: BuildOptions(event_shape=(8, 8, 1)).image_num_bits,
            Refuse(("num_bits", "None")),
        ),
        (
            "build_glow_no_bits",
            lambda: get_model("glow", "image").build(BuildOptions(event_shape=(8, 8, 1))),
            Refuse(("num_bits",)),
        ),
        (
            "build_glow_vector_shape",
            lambda: get_model("glow", "image").build(BuildOptions(event_shape=(4,), num_bits=5)),
            Refuse(("event_shape",)),
        ),
    ]
    return [Row("registry", rid, call, e) for rid, call, e in cases]


SURFACES: dict = {
    "distribution": distribution_rows,
    "training": training_rows,
    "optim_callbacks": optimizer_rows,
    "registry": registry_rows,
}

from audit_surfaces_io import SURFACES as _IO  # noqa: E402

SURFACES.update(_IO)
