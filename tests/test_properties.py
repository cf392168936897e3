"""Property tests (Hypothesis) for the codecs and checks that take arbitrary values.

Each generated input must give the documented answer or the documented
``ValueError`` — never NaN, a wrapped value or a raw framework error. The
example counts are small (the ``tfflows`` profile in conftest.py) so the file
belongs to the fast tier.
"""

from __future__ import annotations

import json
import os
import string
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tfflows
from tfflows.data import integer_pixel_bits, pixel_levels
from tfflows.data.tabular import MIN_TRAIN_ROWS, load_csv, split_rows
from tfflows.distributed import cluster_config
from tfflows.distribution import stateless_seed

INT_DTYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64]
# Models built once per module: a fixture would be rebuilt per example otherwise.
_MODELS: dict[str, tfflows.Model] = {}


def _model(kind: str):
    if kind not in _MODELS:
        if kind == "labels":
            _MODELS[kind] = tfflows.VectorRealNVP(2, num_steps=2, width=8, num_classes=3)
        elif kind == "vectors":
            _MODELS[kind] = tfflows.VectorRealNVP(2, num_steps=2, width=8, context_dim=2)
        else:
            glow = tfflows.Glow((8, 8, 1), num_levels=2, num_steps=1, width=8, num_bits=5)
            glow.initialize(np.random.default_rng(0).uniform(0, 32, (16, 8, 8, 1)).astype("float32"))
            _MODELS[kind] = glow
    return _MODELS[kind]


def _stored_bits(dtype, num_bits: int) -> int:
    """The documented rule of integer_pixel_bits: uint8 8, uint16 16, others as the SavedModel's input."""
    return {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(np.dtype(dtype), 8 if num_bits <= 8 else 16)


# -- pixel levels and bit depths ----------------------------------------------------


@given(dtype=st.sampled_from(INT_DTYPES), num_bits=st.integers(1, 16), data=st.data())
def test_pixel_levels_are_the_documented_bin_centres(dtype, num_bits, data):
    bits = _stored_bits(dtype, num_bits)
    if num_bits > bits:
        with pytest.raises(ValueError, match="bits can only be dropped"):
            integer_pixel_bits(dtype, num_bits)
        return
    assert integer_pixel_bits(dtype, num_bits) == bits
    top = min(2**bits - 1, int(np.iinfo(dtype).max))
    x = data.draw(hnp.arrays(dtype, hnp.array_shapes(max_dims=3, max_side=4), elements=st.integers(0, top)))
    want = np.floor(x.astype(np.float64) / 2 ** (bits - num_bits)) + 0.5
    got = pixel_levels(x, num_bits).numpy()
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_array_equal(got, want.astype(np.float32))
    noisy = pixel_levels(x, num_bits, noise=True, seed=data.draw(st.integers(0, 2**31 - 1))).numpy()
    np.testing.assert_array_equal(np.floor(noisy), want - 0.5)  # the noise stays inside each bin
    assert np.all(noisy < 2**num_bits)


@given(
    num_bits=st.one_of(
        st.integers(max_value=0),
        st.integers(min_value=17),
        st.booleans(),
        st.floats(allow_nan=True),
        st.text(max_size=3),
        st.none(),
    ),
    dtype=st.sampled_from(INT_DTYPES),
)
def test_pixel_levels_refuse_a_bit_depth_outside_1_to_16(num_bits, dtype):
    assume(not (isinstance(num_bits, float) and num_bits.is_integer() and 1 <= num_bits <= 16))
    with pytest.raises(ValueError, match="num_bits"):
        pixel_levels(np.zeros((2,), dtype), num_bits)


@given(dtype=st.sampled_from([tf.float16, tf.float32, tf.float64, tf.bool, tf.string, tf.complex64]))
def test_integer_pixel_bits_refuses_non_integer_dtypes(dtype):
    with pytest.raises(ValueError, match="integer dtype"):
        integer_pixel_bits(dtype, 8)


@settings(max_examples=15)
@given(dtype=st.sampled_from([np.int32, np.int64, np.uint8, np.int16]), data=st.data())
def test_an_image_model_scores_integer_pixels_or_names_the_range(dtype, data):
    """Glow with num_bits=5 reads 8-bit pixels: in 0..255 the score of the bin centres, else ValueError."""
    info = np.iinfo(dtype)
    x = data.draw(
        hnp.arrays(
            dtype,
            (2, 8, 8, 1),
            elements=st.one_of(
                st.integers(0, min(255, int(info.max))), st.integers(int(info.min), int(info.max))
            ),
        )
    )
    glow = _model("glow")
    if x.min() < 0 or x.max() > 255:
        with pytest.raises(ValueError, match=r"8-bit pixels in 0\.\.255"):
            glow.log_prob(x)
        return
    got = glow.log_prob(x).numpy()
    want = glow.log_prob((np.floor(x.astype(np.float64) / 8) + 0.5).astype(np.float32)).numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)


# -- context labels and vectors --------------------------------------------------------


@given(dtype=st.sampled_from(INT_DTYPES), data=st.data())
def test_class_labels_score_as_their_one_hot_or_name_the_range(dtype, data):
    info = np.iinfo(dtype)
    n = data.draw(st.integers(1, 4))
    labels = data.draw(
        hnp.arrays(
            dtype, (n,), elements=st.one_of(st.integers(0, 2), st.integers(int(info.min), int(info.max)))
        )
    )
    model, x = _model("labels"), np.zeros((n, 2), np.float32)
    if labels.min() < 0 or labels.max() > 2:
        with pytest.raises(ValueError, match=r"class labels in 0\.\.2"):
            model.log_prob(x, context=labels)
        return
    got = model.log_prob(x, context=labels).numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(
        got, model.log_prob(x, context=np.eye(3, dtype=np.float32)[labels]).numpy(), rtol=1e-6, atol=1e-6
    )


@given(
    data=st.data(),
    kind=st.sampled_from(["vectors", "labels"]),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_float_contexts_give_a_finite_score_or_a_value_error(data, kind, dtype):
    """Context vectors (and one-hot labels) that are not finite in the model's float32 raise; others score."""
    n = data.draw(st.integers(1, 3))
    width = 2 if kind == "vectors" else 3
    wide = st.floats(width=32 if dtype == np.float32 else 64)  # nan, inf, and float64 beyond float32's range
    context = data.draw(hnp.arrays(dtype, (n, width), elements=st.one_of(st.floats(-3, 3, width=32), wide)))
    model, x = _model(kind), np.zeros((n, 2), np.float32)
    with np.errstate(over="ignore"):
        finite = np.all(np.isfinite(context.astype(np.float32)))
    if not finite:
        with pytest.raises(ValueError, match="finite"):
            model.log_prob(x, context=context)
        return
    assume(np.all(np.abs(context) < 1e3))  # a finite context may still overflow the network's float32
    assert np.all(np.isfinite(model.log_prob(x, context=context).numpy()))


@given(
    value=st.sampled_from(
        [
            np.array([["a", "b"]]),
            np.ones((1, 2), bool),
            np.ones((1, 2), np.complex64),
            np.array([[b"x", b"y"]]),
        ]
    ),
    kind=st.sampled_from(["vectors", "labels"]),
)
def test_contexts_of_other_dtypes_are_refused_by_name(value, kind):
    context = value if kind == "vectors" else value[:, 0]
    with pytest.raises(ValueError, match=r"context|label"):
        _model(kind).log_prob(np.zeros((1, 2), np.float32), context=context)


# -- seeds --------------------------------------------------------------------------------

_SEEDS = st.one_of(
    st.integers(),
    st.booleans(),
    st.floats(),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.tuples(st.integers(), st.integers()),
    st.lists(st.floats(), min_size=2, max_size=2),
    st.lists(st.booleans(), min_size=2, max_size=2),
    hnp.arrays(
        st.sampled_from([np.int32, np.int64, np.uint32, np.uint64, np.float32, np.bool_]),
        hnp.array_shapes(min_dims=0, max_dims=2, max_side=3),
    ),
)


def _documented_seed(seed):
    """The answer ``stateless_seed`` documents for ``seed``: a pair of ints, None, or "error"."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_, str, bytes, float)):
        return "error"
    if isinstance(seed, int):
        return [seed, 0] if -(2**63) <= seed < 2**63 else "error"
    array = np.asarray(seed, dtype=object)
    if array.shape != (2,) or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in array
    ):
        return "error"
    values = [int(v) for v in array]
    return values if all(-(2**63) <= v < 2**63 for v in values) else "error"


@given(seed=_SEEDS)
def test_stateless_seed_gives_the_documented_pair_or_a_value_error(seed):
    want = _documented_seed(seed)
    if want == "error":
        with pytest.raises(ValueError, match="seed must be None, an int, or a stateless seed"):
            stateless_seed(seed)
        return
    got = stateless_seed(seed)
    if want is None:
        assert got is None
        return
    assert got.shape == (2,) and got.dtype.is_integer
    assert [int(v) for v in got.numpy()] == want  # no value wrapped on the way


@given(seed=st.integers(-(2**63), 2**63 - 1))
def test_an_int_seed_draws_the_same_sample_twice(seed):
    model = _model("vectors")
    context = np.zeros((2,), np.float32)  # one context for every sample
    first = model.sample(2, context=context, seed=seed).numpy()
    assert np.all(np.isfinite(first))
    np.testing.assert_array_equal(first, model.sample(2, context=context, seed=seed).numpy())


# -- CSV parsing -----------------------------------------------------------------------------

_NAMES = st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=6)


def _write(content: bytes) -> str:
    fd, path = tempfile.mkstemp(suffix=".csv")
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    return path


@given(names=st.lists(_NAMES, min_size=1, max_size=4, unique=True), data=st.data())
def test_csv_round_trips_finite_numbers_exactly(names, data):
    values = data.draw(
        hnp.arrays(
            np.float64,
            (data.draw(st.integers(1, 5)), len(names)),
            elements=st.floats(allow_nan=False, allow_infinity=False),
        )
    )
    lines = [",".join(names)] + [",".join(repr(float(v)) for v in row) for row in values]
    path = _write(("\n".join(lines) + "\n").encode())
    try:
        got, got_names = load_csv(path)
        assert got_names == names and got.dtype == np.float64
        np.testing.assert_array_equal(got, values)
        keep = data.draw(st.permutations(names))[: data.draw(st.integers(1, len(names)))]
        sub, sub_names = load_csv(path, columns=keep)
        assert sub_names == keep
        np.testing.assert_array_equal(sub, values[:, [names.index(k) for k in keep]])
    finally:
        os.remove(path)


_CELLS = st.one_of(
    st.floats().map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e999", "abc", "1,5"]),
    st.text(max_size=4),
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    content=st.one_of(
        st.binary(max_size=64),
        st.lists(st.lists(_CELLS, min_size=1, max_size=3), min_size=0, max_size=4).map(
            lambda rows: "\n".join(",".join(r) for r in rows).encode("utf-8", "surrogatepass")
        ),
        st.just(b"a,b\n1," + b"1" * 200_000 + b"\n"),
    )
)
def test_any_file_loads_as_finite_float64_or_raises_a_value_error_naming_it(content):
    try:
        path = _write(content)
    except UnicodeEncodeError:  # pragma: no cover - surrogates cannot be written
        return
    try:
        values, names = load_csv(path)
    except ValueError as err:
        assert str(err).startswith(path), err  # every message names the file
        assert not isinstance(err, UnicodeDecodeError), err
        return
    finally:
        os.remove(path)
    assert values.dtype == np.float64 and values.ndim == 2 and values.shape[0] >= 1
    assert values.shape[1] == len(names) and np.all(np.isfinite(values))
    assert len(set(names)) == len(names)  # a column is named once


def test_csv_reads_a_byte_order_mark_as_no_part_of_the_first_name(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\n1,2\n")
    values, names = load_csv(path, columns=["a"])
    assert names == ["a"] and values.tolist() == [[1.0]]


@given(
    num_rows=st.integers(-3, 60),
    val_fraction=st.one_of(st.floats(), st.floats(0, 1, exclude_max=True)),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_rows_is_a_seeded_partition_of_the_documented_sizes(num_rows, val_fraction, seed):
    if not 0.0 <= val_fraction < 1.0:
        with pytest.raises(ValueError, match="val_fraction"):
            split_rows(num_rows, val_fraction, seed)
        return
    want_val = 0 if val_fraction == 0 else max(1, round(val_fraction * num_rows))
    if num_rows - want_val < MIN_TRAIN_ROWS:
        with pytest.raises(ValueError, match=f"expected at least {MIN_TRAIN_ROWS} training rows"):
            split_rows(num_rows, val_fraction, seed)
        return
    train, val = split_rows(num_rows, val_fraction, seed)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(num_rows))
    assert len(val) == want_val and len(train) >= MIN_TRAIN_ROWS
    again = split_rows(num_rows, val_fraction, seed)
    assert train.tolist() == again[0].tolist() and val.tolist() == again[1].tolist()


# -- cluster specs -------------------------------------------------------------------------------

_HOSTS = st.sampled_from(["localhost", "10.0.0.1", "[::1]", "worker-0.example", "h"])
_ADDRESSES = st.builds(lambda h, p: f"{h}:{p}", _HOSTS, st.integers(1, 65535))
_BAD_ADDRESSES = st.one_of(
    st.builds(
        lambda h, p: f"{h}:{p}", _HOSTS, st.one_of(st.integers(max_value=0), st.integers(65536, 99999))
    ),
    st.sampled_from(["localhost", ":80", "a b:80", "host:", "host:8o", "a:1:2"]),
    st.integers(),
    st.none(),
    st.floats(),
    st.lists(st.integers(), max_size=2),
)
_INDICES = st.one_of(st.integers(-2, 5), st.booleans(), st.floats(-1, 5), st.none(), st.text(max_size=2))


def _valid_index(index, size: int) -> bool:
    return isinstance(index, int) and not isinstance(index, bool) and 0 <= index < size


@given(hosts=st.lists(st.one_of(_ADDRESSES, _BAD_ADDRESSES), min_size=1, max_size=4), index=_INDICES)
def test_worker_hosts_give_the_documented_config_or_a_value_error(hosts, index):
    well_formed = all(_is_address(h) for h in hosts)
    if well_formed and len(set(hosts)) == len(hosts) and _valid_index(index, len(hosts)):
        config = cluster_config(worker_index=index, worker_hosts=",".join(hosts))
        assert config == {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        assert cluster_config(worker_index=index, worker_hosts=hosts) == config
        return
    with pytest.raises(ValueError, match=r"worker_hosts|worker_index"):
        cluster_config(worker_index=index, worker_hosts=hosts)


def _is_address(value) -> bool:
    if not isinstance(value, str) or value.count(":") < 1:
        return False
    host, _, port = value.rpartition(":")
    ok_host = bool(host) and (
        (host.startswith("[") and host.endswith("]"))
        or (":" not in host and " " not in host and "," not in host)
    )
    return ok_host and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536


_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 3), st.text(max_size=3)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(
    cluster=st.one_of(
        st.dictionaries(
            st.sampled_from(["worker", "chief", "ps"]),
            st.one_of(st.lists(st.one_of(_ADDRESSES, _BAD_ADDRESSES), max_size=3), _JSON_VALUES),
            max_size=2,
        ),
        _JSON_VALUES,
    ),
    task_type=st.one_of(st.sampled_from(["worker", "chief"]), _JSON_VALUES),
    index=st.one_of(st.integers(-1, 3), st.floats(-1, 3), st.text(max_size=2), st.none(), st.booleans()),
)
def test_tf_config_gives_a_consistent_config_or_a_value_error(cluster, task_type, index):
    text = json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})
    try:
        config = cluster_config(tf_config=text)
    except ValueError as err:
        assert str(err).startswith("TF_CONFIG"), err
        return
    jobs = config["cluster"]
    assert set(jobs) <= {"worker", "chief"} and len(jobs.get("chief", [])) <= 1
    addresses = [a for job in jobs.values() for a in job]
    assert all(_is_address(a) for a in addresses) and len(set(addresses)) == len(addresses)
    assert jobs == cluster and config["task"]["type"] == task_type
    assert config["task"]["index"] == index and _valid_index(index, len(jobs[task_type]))
