"""``tfflows.layers.Conv2D``: its matrix-product forms against the stock convolution.

- For every shape class (1×1, k×k from few channels, k×k to few channels,
  neither), ``implementation="matmul"`` gives the stock convolution's output and
  gradients (kernel, bias and input), in float32 and float64, eagerly, in
  ``tf.function`` and under XLA, with known and unknown spatial sizes.
- ``"auto"`` resolves as documented: stock convolutions where a GPU is
  visible, matrix products otherwise; ``conv_implementation`` overrides it.
  ``fit`` traces for XLA exactly when compiled with ``jit_compile=True``, and
  only then is the im2col form used.
- A Glow step computes the same ``log_prob`` either way; an exported
  SavedModel holds stock ``Conv2D`` ops.
- Bad arguments raise ``ValueError``; the config round-trips.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfflows.layers import convolution
from tfflows.layers.convolution import Conv2D, conv_implementation, resolve_implementation, xla_compiling

# name -> (kernel size, input channels, filters, the form "matmul" takes)
SHAPES = {
    "1x1": (1, 16, 12, "matmul"),
    "3x3_narrow_in": (3, 2, 32, "im2col"),  # under xla_compiling; stock otherwise
    "3x3_narrow_out": (3, 40, 4, "shift_add"),
    "5x5_narrow_out": (5, 60, 2, "shift_add"),
    "3x3_square": (3, 8, 8, "stock"),
}
MODES = ("eager", "function", "xla")
TOL = {"float32": dict(atol=1e-4, rtol=1e-4), "float64": dict(atol=1e-12, rtol=1e-10)}
UNIT_ROUNDOFF = {"float32": float(np.finfo(np.float32).eps) / 2}


def _layer(name: str, dtype: str, implementation: str) -> Conv2D:
    k, c_in, filters, _ = SHAPES[name]
    layer = Conv2D(
        filters,
        k,
        implementation=implementation,
        activation=None,
        dtype=dtype,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=1),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=2),
    )
    layer.build((None, None, None, c_in))
    return layer


def _value_and_grads(layer, x, mode):
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.sin(y))  # non-uniform upstream gradients
        return (y, *tape.gradient(loss, [x, layer.kernel.value, layer.bias.value]))

    if mode == "eager":
        return run(x)
    return tf.function(run, jit_compile=(mode == "xla"))(x)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(SHAPES))
def _magnitudes(layer, x):
    """Output and gradients of the same conv on |x| and |weights| with unit upstream, in float64.

    Each entry bounds the sum of absolute terms behind the matching entry of
    ``_value_and_grads`` (|cos| ≤ 1), which is what float32 round-off scales with.
    """
    _k, _c_in = layer.kernel_size[0], layer.kernel.shape[2]
    absolute = _layer_like(layer, "float64")
    absolute.set_weights([np.abs(w).astype("float64") for w in layer.get_weights()])
    x = tf.constant(np.abs(np.asarray(x, "float64")))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = absolute(x)
        total = tf.reduce_sum(y)
    return (y, *tape.gradient(total, [x, absolute.kernel.value, absolute.bias.value]))


def _layer_like(layer, dtype):
    name = next(
        n
        for n, s in SHAPES.items()
        if s[0] == layer.kernel_size[0] and s[1] == layer.kernel.shape[2] and s[2] == layer.filters
    )
    return _layer(name, dtype, "conv")


def _tolerance(name: str, dtype: str, magnitude) -> dict:
    """float32: an error bound from the terms' magnitudes, the same for every kernel family.

    The gradients chain two sums (the forward one of k²·C_in products, then a
    backward one), and their summation order differs between TensorFlow's
    default kernels, oneDNN's and XLA's. Round-off grows about as √n for n
    terms, so each entry may be off by 4·√n·u·Σ|terms| (u = 2⁻²⁴): a wrong
    form errs by a fraction of Σ|terms| itself, about 10⁵ times more. The
    largest use seen, on AVX-512 with oneDNN, was 72 u·Σ|terms| of 157 allowed.
    """
    if dtype != "float32":
        return TOL[dtype]
    k, c_in, filters, _ = SHAPES[name]
    terms = k * k * c_in + k * k * filters
    return dict(atol=4.0 * np.sqrt(terms) * UNIT_ROUNDOFF[dtype] * np.asarray(magnitude), rtol=0.0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_matmul_forms_equal_the_stock_convolution(name, dtype, mode, assert_close):
    _k, c_in, _, _ = SHAPES[name]
    stock, fast = _layer(name, dtype, "conv"), _layer(name, dtype, "matmul")
    fast.set_weights(stock.get_weights())
    x = tf.constant(np.random.default_rng(0).standard_normal((3, 7, 5, c_in)), dtype)
    want = _value_and_grads(stock, x, "eager")
    with xla_compiling(True):  # every form, im2col included
        got = _value_and_grads(fast, x, mode)
    sizes = _magnitudes(stock, x)
    for what, g, w, m in zip(("output", "d_input", "d_kernel", "d_bias"), got, want, sizes):
        assert_close(f"conv2d matmul {what}", g, w, **_tolerance(name, dtype, m))


def test_matmul_forms_trace_with_unknown_spatial_sizes(assert_close):
    for name in ("3x3_narrow_in", "3x3_narrow_out"):
        stock, fast = _layer(name, "float32", "conv"), _layer(name, "float32", "matmul")
        fast.set_weights(stock.get_weights())
        c_in = SHAPES[name][1]
        with xla_compiling(True):
            f = tf.function(fast, input_signature=[tf.TensorSpec([None, None, None, c_in])])
            f.get_concrete_function()
        for shape in [(2, 6, 9, c_in), (1, 3, 3, c_in), (2, 1, 1, c_in)]:
            x = tf.random.stateless_normal(shape, seed=(1, 2))
            assert_close("conv2d matmul unknown sizes", f(x), stock(x), **TOL["float32"])


@pytest.mark.parametrize("xla", [False, True])
@pytest.mark.parametrize("name", list(SHAPES))
def test_each_shape_takes_the_documented_form(name, xla, monkeypatch):
    seen = []
    for form in ("_im2col_conv", "_shift_add_conv"):
        original = getattr(convolution, form)
        monkeypatch.setattr(convolution, form, lambda *a, _f=form, _o=original: (seen.append(_f), _o(*a))[1])
    layer = _layer(name, "float32", "matmul")
    with xla_compiling(xla):
        graph = tf.function(layer).get_concrete_function(tf.TensorSpec([2, 6, 6, SHAPES[name][1]])).graph
    ops = {op.type for op in graph.get_operations()}
    form = SHAPES[name][3]
    if form == "im2col" and not xla:
        form = "stock"
    assert ("Conv2D" in ops) == (form == "stock")
    assert seen == {"im2col": ["_im2col_conv"], "shift_add": ["_shift_add_conv"]}.get(form, [])


@pytest.mark.parametrize("gpu", [False, True])
def test_auto_resolves_per_machine(monkeypatch, gpu):
    monkeypatch.setattr(convolution, "_gpu_visible", lambda: gpu)
    assert resolve_implementation("auto") == ("conv" if gpu else "matmul")
    assert resolve_implementation("conv") == "conv"
    assert resolve_implementation("matmul") == "matmul"
    for forced in ("conv", "matmul"):
        with conv_implementation(forced):
            assert resolve_implementation("auto") == forced
            # An explicit choice on the layer beats the context.
            other = "matmul" if forced == "conv" else "conv"
            assert resolve_implementation(other) == other
    assert resolve_implementation("auto") == ("conv" if gpu else "matmul")


@pytest.mark.xla
@pytest.mark.slow
def test_fit_traces_for_xla_only_with_jit_compile(monkeypatch):
    import tfflows

    monkeypatch.setattr(convolution, "_gpu_visible", lambda: False)
    seen = []
    original = convolution._im2col_conv
    monkeypatch.setattr(convolution, "_im2col_conv", lambda *a: (seen.append(1), original(*a))[1])
    x = np.random.default_rng(0).integers(0, 32, (4, 4, 4, 1)).astype("float32")
    for jit in (False, True):
        seen.clear()
        # The first conv reads 2 channels into 32: 9·2 ≤ 32, im2col's shape.
        model = tfflows.Glow((4, 4, 1), num_levels=1, num_steps=1, width=32, num_bits=5)
        model.compile(optimizer="adam", jit_compile=jit)
        history = model.fit(x, batch_size=4, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert bool(seen) == jit


def test_glow_log_prob_is_the_same_either_way(assert_close):
    import tfflows

    model = tfflows.Glow((8, 8, 1), num_levels=2, num_steps=2, width=64)
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype("float32")
    model.initialize(x)
    for w in model.trainable_weights:  # the zero output convs too
        w.assign(w + tf.random.stateless_normal(w.shape, seed=(3, 4), stddev=0.02))
    with conv_implementation("conv"):
        stock = model.log_prob(x)
    with conv_implementation("matmul"):
        fast = model.log_prob(x)
        graph = tf.function(model.log_prob).get_concrete_function(tf.constant(x)).graph
    assert_close("glow log_prob matmul convs", fast, stock, atol=1e-3, rtol=1e-6)
    # hidden 64: the 3×3 output conv to 4 channels takes the shift-add form.
    assert sum(op.type == "Conv2D" for op in graph.get_operations()) < 2 * 2 * 3


@pytest.mark.slow  # exports and loads a SavedModel
def test_export_writes_stock_convolutions(tmp_path):
    import tfflows

    model = tfflows.Glow((4, 4, 1), num_levels=1, num_steps=1, width=64, num_bits=5)
    model.initialize(np.random.default_rng(0).integers(0, 32, (4, 4, 4, 1)).astype("float32"))
    with conv_implementation("matmul"):
        path = tfflows.export_saved_model(model, tmp_path / "glow" / "1")
    loaded = tf.saved_model.load(str(path))
    graph = loaded.signatures["log_prob"].graph
    functions = graph.as_graph_def().library.function
    types = {node.op for f in functions for node in f.node_def} | {op.type for op in graph.get_operations()}
    assert "Conv2D" in types


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="implementation"):
        Conv2D(4, 3, implementation="fast")
    with pytest.raises(ValueError, match="odd square kernel_size"):
        Conv2D(4, 2)
    with pytest.raises(ValueError, match="odd square kernel_size"):
        Conv2D(4, (3, 5))
    with pytest.raises(ValueError, match="strides"):
        Conv2D(4, 3, strides=2)
    with pytest.raises(ValueError, match="padding"):
        Conv2D(4, 3, padding="valid")
    with pytest.raises(ValueError, match="dilation_rate"):
        Conv2D(4, 3, dilation_rate=(2, 2))
    with pytest.raises(ValueError, match="data_format"):
        Conv2D(4, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="expected one of"):
        with conv_implementation("gpu"):
            pass
    Conv2D(4, (3, 3), strides=(1, 1), padding="SAME", dilation_rate=1, data_format=None)


def test_config_round_trips(assert_close):
    layer = _layer("3x3_narrow_out", "float32", "matmul")
    config = layer.get_config()
    assert config["implementation"] == "matmul" and "padding" not in config
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is Conv2D and clone.implementation == "matmul"
    if not clone.built:
        clone.build((None, None, None, SHAPES["3x3_narrow_out"][1]))
    clone.set_weights(layer.get_weights())
    x = tf.random.stateless_normal((2, 5, 5, SHAPES["3x3_narrow_out"][1]), seed=(0, 1))
    assert_close("conv2d config clone", clone(x), layer(x), atol=0, rtol=0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("implementation", ["conv", "matmul"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_a_batch_of_zero_gives_filters_channels_and_zero_gradients(name, implementation, mode):
    """TensorFlow's Conv2D returns an empty input unchanged (C_in channels); ours gives C_out."""
    k, c_in, filters, _ = SHAPES[name]
    layer = _layer(name, "float32", implementation)
    y, dx, dkernel, dbias = _value_and_grads(layer, tf.zeros((0, 6, 5, c_in)), mode)
    assert tuple(y.shape) == (0, 6, 5, filters) and tuple(dx.shape) == (0, 6, 5, c_in)
    assert dkernel.shape == (k, k, c_in, filters) and not np.any(dkernel.numpy())
    assert dbias.shape == (filters,) and not np.any(dbias.numpy())
