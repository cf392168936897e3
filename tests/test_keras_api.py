"""Keras conventions: summary, plot_model, export, metric direction, compile and sample weights.

1. ``summary()`` prints every flow layer with its output shape and parameter count.
2. ``as_functional()`` draws every step with ``keras.utils.plot_model`` and computes log_prob.
3. ``model.export`` (Keras's ExportArchive) serves log_prob.
4. ``bits_per_dim`` / ``nats_per_dim`` are minimised by EarlyStopping and ModelCheckpoint
   without ``mode``.
5. ``compile(loss=...)`` raises; ``compile(optimizer=...)`` and loading keep working.
6. ``sample_weight`` weights the NLL in ``fit`` and ``evaluate``, also under MirroredStrategy.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import textwrap
import warnings
from collections.abc import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfflows.io import is_temporary

from helpers import CONDITIONED, TWO_CPUS, derived, registered_models, run_script

# Every registered model (helpers.registered_models) with each conditioning, and one variant
# derived from the registered NSF: a vector flow that starts with a fitted Standardize step
# (weights that are not trained, in the summary as in every other view).
MODELS: dict[str, Callable[[], keras.Model]] = {
    **registered_models(conditioning=(None, *CONDITIONED)),
    "nsf-vector-standardize": lambda: derived(MODELS["nsf-vector"], standardize=True),
}
# The summary's and the export's cases: every model unconditioned, the first model of each data
# kind with each conditioning, and the variant.
EVERY_KIND = [
    *registered_models(),
    *registered_models(conditioning=CONDITIONED, first_per_kind=True),
    "nsf-vector-standardize",
]


def make(name: str, n: int = 8, seed: int = 0):
    """A tiny model with non-zero weights, its data and context (or None)."""
    keras.utils.set_random_seed(seed)
    model = MODELS[name]()
    rng = np.random.default_rng(seed)
    if len(model.event_shape) == 3:
        x = rng.uniform(0, 2**model.num_bits, (n, *model.event_shape)).astype("float32")
    else:
        x = rng.normal(size=(n, *model.event_shape)).astype("float32")
    context = None
    if model.num_classes is not None:
        context = rng.integers(0, model.num_classes, n).astype("int32")
    elif model.context_dim is not None:
        context = rng.normal(size=(n, model.context_dim)).astype("float32")
    model.initialize((x, context))
    for v in model.trainable_variables:  # couplings start as the identity: move them
        v.assign(v + 0.05 * rng.standard_normal(v.shape).astype("float32"))
    return model, x, context


def inputs(x, context):
    """``fit``'s and ``evaluate``'s leading arguments: ``x`` or ``x, context`` (context as ``y``)."""
    return (x,) if context is None else (x, context)


# -- 1. summary ----------------------------------------------------------------


@pytest.mark.parametrize("name", EVERY_KIND)
def test_summary_shows_shapes_and_parameters_of_every_flow_layer(name, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich crops the table at the terminal's width
    model, _, _ = make(name)
    lines: list[str] = []
    model.summary(line_length=160, print_fn=lambda line, *a, **k: lines.append(line))
    text = "\n".join(lines)
    rows = {}
    for layer in model.flow_layers:
        found = re.search(rf"│ {re.escape(layer.name)} \((\w+)\)\s*│ ([^│]*?)\s*│\s*([\d,]+) │", text)
        assert found, f"no row for {layer.name} in\n{text}"
        assert found.group(1) == type(layer).__name__
        # A flow step keeps its input's shape: the row shows it (batch None) and the log-det's [batch].
        event = layer._build_shapes_dict["x_shape"][1:]
        assert found.group(2) == f"[({', '.join(['None', *map(str, event)])}), (None)]", found.group(0)
        rows[layer.name] = int(found.group(3).replace(",", ""))
        assert rows[layer.name] == layer.count_params() > 0
    total = int(re.search(r"Total params: ([\d,]+)", text).group(1).replace(",", ""))
    assert total == model.count_params()
    # Every weight is in a flow layer's row but the model's own step counter.
    assert sum(rows.values()) + int(np.prod(model.nonfinite_steps.shape)) == total
    assert "?" not in text


# -- 2. the functional view: plot_model and log_prob -----------------------------


@pytest.mark.parametrize(
    "name", ["glow-image", "realnvp-image", "glow-image-num_classes", "glow-vector-context_dim"]
)
def test_functional_view_computes_log_prob(name, assert_close):
    model, x, context = make(name)
    view = model.as_functional()
    assert view is model.as_functional()  # built once
    assert {id(w) for w in view.weights} <= {id(w) for w in model.weights}  # the same weights
    got = view(x) if context is None else view([x, context])
    assert_close("functional view log_prob", got, model.log_prob(x, context), atol=1e-4, rtol=1e-5)


def test_functional_view_is_not_saved(tmp_path):
    import zipfile

    import h5py

    def entries(path):
        with zipfile.ZipFile(path) as z:
            z.extract("model.weights.h5", tmp_path / path.stem)
        names = []
        with h5py.File(tmp_path / path.stem / "model.weights.h5") as f:
            f.visit(names.append)
        return sorted(names)

    model, x, context = make("glow-vector-context_dim")
    model.save(tmp_path / "before.keras")
    model.as_functional()
    assert model.layers == model.flow_layers  # the view's own nodes are not the model's layers
    model.save(tmp_path / "after.keras")
    assert entries(tmp_path / "after.keras") == entries(tmp_path / "before.keras")
    loaded = keras.models.load_model(tmp_path / "after.keras")
    np.testing.assert_allclose(loaded.log_prob(x, context), model.log_prob(x, context), rtol=1e-6)


def test_plot_model_draws_every_step_in_order(tmp_path):
    pydot = pytest.importorskip("pydot")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    model, _, _ = make("glow-image")
    # Keras draws a subclassed model as one box: the reason for as_functional().

    def nodes(dot):  # pydot lists the node defaults as a node called "node"
        return {
            n.get_name().strip('"'): n.get_label() or ""
            for n in dot.get_nodes()
            if n.get_name() not in ("node", "edge", "graph")
        }

    assert len(nodes(keras.utils.model_to_dot(model))) == 1
    view = model.as_functional()
    dot = keras.utils.model_to_dot(view, show_shapes=True, show_layer_names=True)
    assert isinstance(dot, pydot.Dot)
    label = nodes(dot)
    for layer in model.flow_layers:
        assert any(layer.name in text for text in label.values()), layer.name
    # The edges lead from the input through every flow layer, in the flow's order, to log_prob.
    edges: dict[str, set] = {}
    for e in dot.get_edges():
        edges.setdefault(e.get_source().strip('"'), set()).add(e.get_destination().strip('"'))

    def reachable(a, b):
        seen, todo = set(), [str(id(a))]
        while todo:
            node = todo.pop()
            seen.add(node)
            todo += [d for d in edges.get(node, ()) if d not in seen]
        return str(id(b)) in seen

    chain = [view.get_layer("x"), *model.flow_layers, view.get_layer("log_prob")]
    for a, b in itertools.pairwise(chain):
        assert reachable(a, b) and not reachable(b, a), (a.name, b.name)
    out = model.plot(tmp_path / "glow.png")
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(tmp_path) if is_temporary(p)]


# -- 3. model.export -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", EVERY_KIND)
def test_model_export_round_trip_serves_log_prob(name, tmp_path, assert_close, capsys):
    model, x, context = make(name)
    path = str(tmp_path / "export")
    model.export(path)
    assert f"Saved artifact at '{path}'" in capsys.readouterr().out
    model.export(path, verbose=False)  # a SavedModel there is replaced
    assert sorted(p for p in os.listdir(tmp_path)) == ["export"]
    loaded = tf.saved_model.load(path)
    args = [tf.constant(x)] + ([] if context is None else [tf.constant(context)])
    want = model.log_prob(x, context)
    assert_close("export serve log_prob", loaded.serve(*args), want, atol=1e-4, rtol=1e-5)
    # The TF Serving signature: the same numbers by keyword.
    signature = loaded.signatures["serving_default"]
    names = ["x"] + ([] if context is None else ["context"])
    out = signature(**dict(zip(names, args)))
    assert_close("export signature log_prob", next(iter(out.values())), want, atol=1e-4, rtol=1e-5)


def test_model_export_refuses_what_it_cannot_write(tmp_path):
    model, _, _ = make("glow-vector-context_dim")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a SavedModel folder"):
        model.export(tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="format='tf_saved_model'"):
        model.export(tmp_path / "m.onnx", format="onnx")
    model.trainable_variables[0].assign(np.full(model.trainable_variables[0].shape, np.nan))
    with pytest.raises(ValueError, match=r"inf or NaN|non-finite|not finite"):
        model.export(tmp_path / "nan")
    assert not (tmp_path / "nan").exists()


# -- 4. metric direction ---------------------------------------------------------


@pytest.mark.parametrize(
    "name,metric", [("glow-image", "bits_per_dim"), ("glow-vector-context_dim", "nats_per_dim")]
)
def test_monitors_minimise_the_per_dim_metric_without_mode(name, metric, tmp_path):
    model, _, _ = make(name)
    model.compile(optimizer="adam")
    history = [3.0, 2.0, 2.5, 1.0, 1.5]
    stop = keras.callbacks.EarlyStopping(monitor=f"val_{metric}", patience=2)
    keep = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "e{epoch}.weights.h5"),
        monitor=f"val_{metric}",
        save_best_only=True,
        save_weights_only=True,
        verbose=0,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for cb in (stop, keep):
            cb.set_model(model)
            cb.on_train_begin()
        for epoch, value in enumerate(history):
            logs = {"loss": value, f"val_{metric}": value}
            for cb in (stop, keep):
                cb.on_epoch_end(epoch, logs)
    assert not [w for w in caught if "mode" in str(w.message)]
    assert stop.monitor_op == keep.monitor_op == keras.ops.less
    assert stop.best == keep.best == 1.0
    assert stop.wait == 1 and not model.stop_training  # 1.5 after 1.0: one epoch without progress
    saved = sorted(int(p[1 : -len(".weights.h5")]) for p in os.listdir(tmp_path) if p.endswith(".h5"))
    assert saved == [1, 2, 4]  # the epochs (from 1) that lowered the value


@pytest.mark.slow
def test_early_stopping_on_val_bits_per_dim_in_fit(tmp_path):
    model, x, _ = make("glow-image", n=16)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    stop = keras.callbacks.EarlyStopping(monitor="val_bits_per_dim", patience=3, restore_best_weights=True)
    keep = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "best.keras"), monitor="val_bits_per_dim", save_best_only=True, verbose=0
    )
    history = model.fit(
        x, batch_size=8, epochs=3, validation_data=(x[:8],), verbose=0, callbacks=[stop, keep]
    ).history
    assert stop.monitor_op == keras.ops.less
    assert np.isclose(stop.best, min(history["val_bits_per_dim"]))
    assert min(history["val_bits_per_dim"]) < history["val_bits_per_dim"][0]  # it trained
    loaded = keras.models.load_model(tmp_path / "best.keras")
    np.testing.assert_allclose(
        loaded.evaluate(x[:8], verbose=0, return_dict=True)["bits_per_dim"], stop.best, rtol=1e-5
    )


# -- 5. compile --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": "mse"},
        {"loss": keras.losses.MeanSquaredError()},
        {"loss_weights": [1.0]},
        {"metrics": ["mae"]},
        {"weighted_metrics": ["mae"]},
    ],
    ids=["loss", "loss_object", "loss_weights", "metrics", "weighted_metrics"],
)
def test_compile_refuses_losses_and_metrics(kwargs):
    model, _, _ = make("nsf-vector-standardize")
    with pytest.raises(ValueError, match="negative log-likelihood") as err:
        model.compile(optimizer="adam", **kwargs)
    assert next(iter(kwargs)) in str(err.value)
    assert not model.compiled


def test_compile_refuses_a_positional_loss_and_keeps_the_rest(tmp_path):
    model, x, _ = make("realnvp-vector")
    with pytest.raises(ValueError, match="loss='mse'"):
        model.compile("adam", "mse")
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)  # Keras's default
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=[])
    model.fit(x, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # compile_from_config
    assert loaded.compiled and int(loaded.optimizer.iterations) == 1
    assert loaded.evaluate(x, verbose=0, return_dict=True).keys() == {"loss", "nats_per_dim"}
    assert loaded.metrics_names == ["loss", "nats_per_dim"]
    loss, per_dim = loaded.evaluate(x, verbose=0)  # the list in metrics_names' order
    np.testing.assert_allclose(per_dim, loss / 3, rtol=1e-6)


# -- 6. sample weights -------------------------------------------------------------


@pytest.mark.parametrize("name", ["glow-image", "maf-vector-num_classes"])
def test_evaluate_weights_examples(name, assert_close):
    model, x, context = make(name, n=12)
    model.compile(optimizer="adam")
    first = np.arange(12) < 6
    rtol = 2e-6

    def evaluate(data, **kwargs):
        return model.evaluate(*data, batch_size=4, verbose=0, return_dict=True, **kwargs)

    def part(index):
        return inputs(x[index], None if context is None else context[index])

    half = evaluate(inputs(x, context), sample_weight=first.astype("float32"))
    want = evaluate(part(first))
    for key in want:
        assert_close(f"zero weights: {key}", half[key], want[key], atol=0, rtol=rtol)
    # Weight 2 on the first half = the first half twice.
    doubled = evaluate(inputs(x, context), sample_weight=np.where(first, 2.0, 1.0))
    twice = evaluate(part(np.r_[np.arange(12), np.arange(6)]))
    for key in twice:
        assert_close(f"double weights: {key}", doubled[key], twice[key], atol=0, rtol=rtol)
    # A batch (the middle four) that weighs nothing adds nothing, and no NaN.
    middle = (np.arange(12) < 4) | (np.arange(12) >= 8)
    some = evaluate(inputs(x, context), sample_weight=middle.astype("float32"))
    rest = evaluate(part(middle))
    for key in rest:
        assert np.isfinite(some[key])
        assert_close(f"zero batch: {key}", some[key], rest[key], atol=0, rtol=rtol)
    # The same weights as a dataset's third element.
    labels = np.zeros(12, "float32") if context is None else context
    ds = tf.data.Dataset.from_tensor_slices((x, labels, first.astype("float32"))).batch(4)
    from_ds = evaluate((ds,))
    for key in want:
        assert_close(f"dataset weights: {key}", from_ds[key], want[key], atol=0, rtol=rtol)


def _twins(name, n):
    a, x, context = make(name, n=n)
    b, _, _ = make(name, n=n)
    b.set_weights(a.get_weights())
    for m in (a, b):
        # SGD: Adam divides by the gradient's size, so it magnifies round-off where a gradient is ~0.
        m.compile(optimizer=keras.optimizers.SGD(0.05))
    return a, b, x, context


@pytest.mark.slow
@pytest.mark.parametrize("name", ["realnvp-vector", "realnvp-vector-num_classes"])
def test_fit_with_zero_weights_equals_fit_on_the_rest(name, assert_close):
    weighted, plain, x, context = _twins(name, 8)
    start = [w.copy() for w in weighted.get_weights()]
    keep = np.arange(8) % 2 == 0
    weighted.fit(
        *inputs(x, context),
        sample_weight=keep.astype("float32"),
        batch_size=8,
        epochs=3,
        shuffle=False,
        verbose=0,
    )
    plain.fit(
        *inputs(x[keep], None if context is None else context[keep]),
        batch_size=4,
        epochs=3,
        shuffle=False,
        verbose=0,
    )
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(weighted.get_weights(), start))
    assert moved > 1e-3
    for a, b in zip(weighted.get_weights(), plain.get_weights()):
        assert_close("fit: zero weights = the rest", a, b, atol=2e-5, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_fit_with_double_weights_equals_duplicated_examples(jit_compile, assert_close):
    weighted, plain, x, _ = _twins("realnvp-vector", 6)
    for m in (weighted, plain):
        m.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=jit_compile)
    twice = np.arange(6) < 2
    w = np.where(twice, 2.0, 1.0)
    h1 = weighted.fit(
        x, sample_weight=w, batch_size=6, epochs=3, shuffle=False, verbose=0, validation_data=(x, None, w)
    ).history
    h2 = plain.fit(np.concatenate([x, x[twice]]), batch_size=8, epochs=3, shuffle=False, verbose=0).history
    assert_close("fit: weight 2 loss", h1["loss"], h2["loss"], atol=0, rtol=1e-5)
    for a, b in zip(weighted.get_weights(), plain.get_weights()):
        assert_close("fit: weight 2 = duplicated", a, b, atol=2e-5, rtol=1e-4)
    # validation_data=(x, None, w) is weighted too (Keras would drop w where y is None).
    want = -np.sum(w * weighted.log_prob(x).numpy()) / np.sum(w)
    assert_close("fit: weighted val_loss", h1["val_loss"][-1], want, atol=0, rtol=1e-5)


def test_fit_skips_a_batch_that_weighs_nothing():
    model, x, _ = make("realnvp-vector", n=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    start = [w.copy() for w in model.get_weights()]
    history = model.fit(x, sample_weight=np.zeros(8), batch_size=4, epochs=1, verbose=0).history
    assert not model.stopped_on_nonfinite and int(model.nonfinite_steps.numpy()) == 0
    assert int(model.optimizer.iterations.numpy()) == 0
    assert all(np.array_equal(a, b) for a, b in zip(start, model.get_weights()))
    assert np.isnan(history["loss"][0])  # no step was applied: no mean loss to report


@pytest.mark.parametrize(
    "weight,match",
    [
        (-np.ones(8), "finite and >= 0"),
        (np.full(8, np.nan), "finite and >= 0"),
        (np.ones((8, 2)), "shape \\[num_examples\\]"),
    ],
)
def test_bad_sample_weights_raise(weight, match):
    model, x, _ = make("realnvp-vector", n=8)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=match):
        model.fit(x, sample_weight=weight, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=match):
        model.evaluate(x, sample_weight=weight, verbose=0)
    # In a graph (fit, evaluate) a dataset's weights are checked as the batch runs.
    ds = tf.data.Dataset.from_tensor_slices(
        (x, np.zeros(8, "float32"), np.resize(weight, 8).astype("float32"))
    ).batch(8)
    if np.resize(weight, 8)[0] < 0 or np.isnan(np.resize(weight, 8)[0]):
        with pytest.raises(tf.errors.InvalidArgumentError, match="finite and >= 0"):
            model.evaluate(ds, verbose=0)
    # Eagerly, the step itself checks a batch's weights as well.
    with pytest.raises(ValueError, match="sample_weight"):
        model.test_step((tf.constant(x), None, tf.constant(np.resize(weight, (8, 2)), tf.float32)))


MIRRORED_WEIGHTS = textwrap.dedent("""
    from tfflows import VectorGlow

    def make():
        return VectorGlow(4, num_steps=2, width=16, seed=3)

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16, 4)) + 1.0).astype("float32")
    # Weights 0, 1 and 3 in runs: the two replicas' halves of the batch weigh 4 and 18.
    # (An uneven first batch fails in Keras itself: its symbolic build averages the replicas' data.)
    w = np.where(np.arange(16) < 4, 0.0, np.where(np.arange(16) < 10, 1.0, 3.0)).astype("float32")
    single, mirrored, strategy, start = twins(make, rng, 0.05)
    h1 = single.fit(x, sample_weight=w, batch_size=16, epochs=2, shuffle=False, verbose=0)
    h2 = mirrored.fit(x, sample_weight=w, batch_size=16, epochs=2, shuffle=False, verbose=0)
    e1 = single.evaluate(x, sample_weight=w, batch_size=16, verbose=0, return_dict=True)
    e2 = mirrored.evaluate(x, sample_weight=w, batch_size=16, verbose=0, return_dict=True)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single.get_weights(), mirrored.get_weights()))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(start, mirrored.get_weights()))
    lp = single.log_prob(x).numpy().astype(np.float64)
    print("RESULT " + json.dumps({
        "replicas": strategy.num_replicas_in_sync, "loss_single": h1.history["loss"],
        "loss_mirrored": h2.history["loss"], "eval_single": e1["loss"], "eval_mirrored": e2["loss"],
        "eval_want": float(-(w * lp).sum() / w.sum()), "diff": diff, "moved": moved}))
""")


@pytest.mark.slow
def test_sample_weights_under_mirrored_strategy():
    out = run_script(TWO_CPUS + MIRRORED_WEIGHTS)
    assert out["replicas"] == 2
    np.testing.assert_allclose(out["loss_mirrored"], out["loss_single"], rtol=1e-5)
    assert out["moved"] > 1e-3 and out["diff"] < 1e-5
    np.testing.assert_allclose(out["eval_mirrored"], out["eval_want"], rtol=1e-5)
    np.testing.assert_allclose(out["eval_single"], out["eval_want"], rtol=1e-5)
