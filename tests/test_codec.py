"""tfflows.codec: exact round trips, sizes that match the model's likelihood, and one-line refusals."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib

import keras
import numpy as np
import pytest

import tfflows.codec as codec
from tfflows.codec import quantize as qz
from tfflows.codec.container import CodecError
from tfflows.data.images import load_images
from tfflows.models.idf import IDF, TINY_CONFIG

SHIPPED = os.path.join(os.path.dirname(__file__), "..", "saved_models", "idf_fashion_mnist", "model.keras")
SHIPPED_DIGITS = os.path.join(os.path.dirname(__file__), "..", "saved_models", "idf_digits", "model.keras")


def _perturbed(model: IDF, seed: int, std: float = 0.3) -> IDF:
    # Away from its zero-initialised last layers, so every coupling moves values and every prior differs.
    rng = np.random.default_rng(seed)
    model.set_weights([w + rng.normal(0.0, std, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def tiny() -> IDF:
    model = IDF((28, 28, 1), **TINY_CONFIG)
    model.build()
    return _perturbed(model, 0)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return load_images("fashion_mnist", "test")[:100]


def _model_bits(model: IDF, x: np.ndarray) -> np.ndarray:
    twin = codec.Codec(model).twin
    return -np.asarray(twin.log_prob(x.astype(np.float64))) / np.log(2.0)


@pytest.mark.parametrize("layout", ["stream", "random_access"])
def test_hundred_images_round_trip_exactly(tiny, images, layout):
    data = codec.compress(tiny, images, layout=layout)
    out = codec.decompress(tiny, data)
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out, images)
    assert codec.compress(tiny, images, layout=layout) == data  # deterministic


def test_the_couplings_move_values(tiny, images):
    shifts = []
    tiny.groups(images[:4].astype(np.float32), shifts=shifts)
    assert all(np.abs(np.round(np.asarray(t))).max() >= 1 for t in shifts)


def test_random_access_decodes_each_image_alone(tiny, images):
    data = codec.compress(tiny, images, layout="random_access")
    for i in (0, 37, 99):
        np.testing.assert_array_equal(codec.decompress(tiny, data, index=i), images[i])
    with pytest.raises(CodecError, match="out of range: the file holds 100 images"):
        codec.decompress(tiny, data, index=100)
    stream = codec.compress(tiny, images)
    with pytest.raises(CodecError, match="needs a random-access file"):
        codec.decompress(tiny, stream, index=0)


def test_stream_size_is_the_coders_information(tiny, images):
    coder = codec.Codec(tiny)
    bits = 8 * len(coder.compress(images))
    ideal = float(np.sum(coder.last_information))
    assert not coder.last_fallback.any()
    # (constriction's fixed-point probabilities differ from these floats in the last few parts per 10⁴)
    assert abs(bits - ideal) <= ideal * 0.002 + 64 * 8, (bits, ideal)


def test_coders_information_is_at_most_the_models(tiny, images):
    # The coder keeps the latent range only (the tails beyond it are never used) and rounds the
    # parameters: for this untrained model with broad priors the first dominates.
    coder = codec.Codec(tiny)
    coder.compress(images)
    ideal = coder.last_information
    assert np.all(ideal <= _model_bits(tiny, images) * 1.001)


def test_one_image_of_shape_hwc(tiny, images):
    data = codec.compress(tiny, images[3])
    np.testing.assert_array_equal(codec.decompress(tiny, data), images[3:4])


def test_fallback_images_round_trip(tiny, images, monkeypatch):
    # A guard band wider than any margin sends every image down the network-free path.
    monkeypatch.setattr(qz, "GUARD", 1.0)
    coder = codec.Codec(tiny)
    data = coder.compress(images[:5])
    assert coder.last_fallback.all()
    assert 8 * len(data) >= 5 * images[0].size * 8  # 8 bits per pixel: no network used
    np.testing.assert_array_equal(coder.decompress(data), images[:5])


def test_exact_exp_matches_numpy():
    x = np.linspace(-700, 700, 100001)
    rel = np.abs(qz.exact_exp(x) - np.exp(x)) / np.exp(x)
    assert rel.max() < 4e-16


def test_probabilities_are_the_quantized_mixture_on_the_latent_range(tiny, images):
    lo, hi = tiny.latent_range()
    for z, params in tiny.groups(images[:2].astype(np.float32)):
        q = qz.quantize(np.asarray(params, np.float64), lo, hi)
        p = qz.probabilities(q, lo, hi)
        assert p.shape == tuple(z.shape) + (hi - lo + 1,)
        # The same mixture from its formula with numpy's exp: P(v) = Σₖ wₖ [σ((v+½−μₖ)/sₖ) − σ((v−½−μₖ)/sₖ)].
        mean = q.mean[..., None] / qz.MEAN_STEPS
        scale = np.exp(q.log_scale[..., None] / qz.LOG_SCALE_STEPS - 4.0)
        weight = np.exp(q.logit / qz.LOGIT_STEPS)
        weight = weight / weight.sum(-1, keepdims=True)
        v = np.arange(lo, hi + 1)
        sig = lambda u: 1.0 / (1.0 + np.exp(-u))
        direct = np.sum(
            weight[..., None] * (sig((v + 0.5 - mean) / scale) - sig((v - 0.5 - mean) / scale)), -2
        )
        np.testing.assert_allclose(p, direct, rtol=1e-12, atol=1e-15)
        assert np.all(p.sum(-1) <= 1.0 + 1e-12)


# -- refusals: one line each ------------------------------------------------------------------------


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_refuses_another_models_file(tiny, images):
    other = _perturbed(IDF((28, 28, 1), **TINY_CONFIG), 1)
    data = codec.compress(tiny, images[:3])
    with pytest.raises(CodecError, match="compressed with another model") as err:
        codec.decompress(other, data)
    _one_line(err)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: b"", "empty"),
        (lambda d: d[:-7], "corrupted or truncated"),
        (lambda d: d[:20], "truncated"),
        (lambda d: d[:60] + bytes([d[60] ^ 0x10]) + d[61:], "corrupted"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "corrupted"),
        (lambda d: b"PK\x03\x04" + d[4:], "not a tfflows codec file"),
    ],
)
def test_refuses_damaged_files(tiny, images, damage, message):
    data = codec.compress(tiny, images[:3])
    with pytest.raises(CodecError, match=message) as err:
        codec.decompress(tiny, damage(data))
    _one_line(err)


def test_refuses_a_header_that_claims_too_much(tiny, images):
    data = bytearray(codec.compress(tiny, images[:3]))
    struct.pack_into("<I", data, 36, 2**31)  # count
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))  # a checksum that matches the lie
    with pytest.raises(CodecError, match="claims 2147483648 images"):
        codec.decompress(tiny, bytes(data))


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda x: x.astype(np.float32), "expected uint8 images"),
        (lambda x: x.astype(np.int64), "expected uint8 images"),
        (lambda x: x[:, :27], r"expected images of shape \(28, 28, 1\)"),
        (lambda x: x[:0], "no images"),
        (lambda x: x[:, :, :, 0], r"expected images of shape"),
    ],
)
def test_refuses_images_it_cannot_code(tiny, images, bad, message):
    with pytest.raises(CodecError, match=message) as err:
        codec.compress(tiny, bad(images[:2]))
    _one_line(err)


def test_refuses_levels_above_num_bits():
    model = IDF((8, 8, 1), num_bits=5, **TINY_CONFIG)
    model.build()
    x = np.full((1, 8, 8, 1), 40, np.uint8)
    with pytest.raises(
        CodecError, match=r"pixel values must be in 0..31 \(num_bits=5\), got a maximum of 40"
    ):
        codec.compress(model, x)


def test_refuses_a_model_that_is_not_an_integer_flow():
    model = keras.Sequential([keras.layers.Dense(1)])
    with pytest.raises(CodecError, match=r"needs an integer discrete flow .* got a Sequential"):
        codec.compress(model, np.zeros((1, 28, 28, 1), np.uint8))


# -- the model ----------------------------------------------------------------------------------------


def test_idf_saves_and_loads_with_the_same_fingerprint(tiny, images, tmp_path):
    path = str(tmp_path / "idf.keras")
    tiny.save(path)
    loaded = keras.models.load_model(path)
    assert codec.fingerprint(loaded) == codec.fingerprint(tiny)
    np.testing.assert_array_equal(codec.decompress(loaded, codec.compress(tiny, images[:4])), images[:4])


def test_idf_exports_a_savedmodel_serving_log_prob(tiny, images, tmp_path):
    import tensorflow as tf

    tiny.export(str(tmp_path / "served"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "served"))
    x = images[:4].astype(np.float32)
    np.testing.assert_allclose(served.serve(x).numpy(), np.asarray(tiny.log_prob(x)), rtol=1e-5)


def test_idf_encode_decode_and_fit(images):
    model = IDF((28, 28, 1), **TINY_CONFIG)
    model.build()
    before = [np.array(w) for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    hist = model.fit(images.astype(np.float32), batch_size=50, epochs=1, verbose=0)
    assert np.isfinite(hist.history["bits_per_dim"][0])
    changed = [not np.array_equal(b, np.array(w)) for b, w in zip(before, model.trainable_weights)]
    assert all(changed), [w.path for w, c in zip(model.trainable_weights, changed) if not c]
    latents = model.encode(images[:3])
    np.testing.assert_array_equal(np.asarray(model.decode(latents)), images[:3].astype(np.float32))
    assert model.sample(2, seed=0).shape == (2, 28, 28, 1)


def test_idf_rejects_bad_arguments():
    with pytest.raises(ValueError, match="divisible by 2\\*\\*num_levels = 4"):
        IDF((30, 30, 1))
    with pytest.raises(ValueError, match="num_mixtures must be a positive integer, got 0"):
        IDF((28, 28, 1), num_mixtures=0)


# -- the command line ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_file(tiny, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("codec") / "tiny.keras")
    tiny.save(path)
    return path


def _write_pngs(folder, images) -> None:
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0]).save(os.path.join(folder, f"img_{i:03d}.png"))


def test_cli_round_trip(tiny_file, images, tmp_path, capsys):
    from PIL import Image

    from tfflows.cli import main

    _write_pngs(tmp_path / "in", images[:10])
    assert main(["compress", tiny_file, str(tmp_path / "in"), "-o", str(tmp_path / "x.tffc")]) == 0
    assert main(["decompress", tiny_file, str(tmp_path / "x.tffc"), "-o", str(tmp_path / "out")]) == 0
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == [f"{i:05d}.png" for i in range(10)]
    for i, name in enumerate(names):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / name)), images[i][..., 0])


@pytest.mark.parametrize(
    "case, message",
    [
        ("corrupt", "tfflows decompress: the file is corrupted or truncated"),
        ("other_model", "tfflows decompress: the file was compressed with another model"),
        ("not_idf", "tfflows decompress: .* holds a Sequential; the codec needs an integer discrete flow"),
        ("missing_model", "tfflows decompress: no model file at"),
        ("exists", "tfflows decompress: .* exists; pass --overwrite"),
    ],
)
def test_cli_refuses_with_one_line_and_status_2(tiny_file, images, tmp_path, capsys, case, message):
    from tfflows.cli import main

    data = codec.compress(keras.models.load_model(tiny_file), images[:2])
    file, model_path, out = tmp_path / "x.tffc", tiny_file, tmp_path / "out"
    file.write_bytes(data[:-3] if case == "corrupt" else data)
    if case == "other_model":
        model_path = str(tmp_path / "other.keras")
        _perturbed(IDF((28, 28, 1), **TINY_CONFIG), 5).save(model_path)
    if case == "not_idf":
        model_path = str(tmp_path / "dense.keras")
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(model_path)
    if case == "missing_model":
        model_path = str(tmp_path / "nothing.keras")
    if case == "exists":
        out.mkdir()
    capsys.readouterr()
    assert main(["decompress", model_path, str(file), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert __import__("re").match(message, err), err
    if case != "exists":
        assert not out.exists()


def test_cli_train_refusals_of_an_idf_need_no_training(tmp_path, capsys):
    """The refusals of ``tfflows train --model idf``, checked without training (the runs are slow)."""
    from tfflows.cli import main

    base = ["train", "--model", "idf", "--dataset", "digits", "--max-train", "8"]
    assert main([*base, "--conditional", "--out", str(tmp_path / "a")]) == 2
    assert "tfflows train: --model idf is unconditional; drop --conditional." in capsys.readouterr().err
    checkpoints = tmp_path / "b" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "epoch_003.keras").write_bytes(b"")  # a previous run's checkpoint, by its name
    assert main([*base, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert f"{checkpoints} holds checkpoints; pass --resume to go on from epoch 3" in err, err


@pytest.mark.slow  # three tfflows train runs of an IDF
def test_cli_trains_an_idf(tmp_path):
    from tfflows.cli import main

    out = str(tmp_path / "run")
    args = [
        "train",
        "--model",
        "idf",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--max-train",
        "64",
        "--steps",
        "2",
        "--width",
        "8",
        "--out",
        out,
    ]
    assert main(args) == 0
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    assert isinstance(model, IDF) and model.event_shape == (8, 8, 1) and model.num_bits == 5
    assert main(args) == 2  # checkpoints there: --resume or --overwrite
    assert main(args + ["--overwrite"]) == 0


def test_cli_compress_refuses_a_wrong_size_image(tiny_file, tmp_path, capsys):
    from tfflows.cli import main

    _write_pngs(tmp_path / "in", np.zeros((1, 32, 32, 1), np.uint8))
    assert main(["compress", tiny_file, str(tmp_path / "in"), "-o", str(tmp_path / "x.tffc")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a 32×32 uint8 image; the model codes 28×28 uint8 images" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.tffc").exists()


def test_shipped_digits_model_codes_its_test_set_at_its_recorded_figure():
    import json

    card = json.load(open(os.path.join(os.path.dirname(SHIPPED_DIGITS), "codec_card.json")))
    model = keras.models.load_model(SHIPPED_DIGITS)
    x = load_images("digits", "test")
    assert len(x) == card["test_examples"] and x.max() == 16
    bpd = float(np.mean(np.asarray(model.bits_per_dim(x.astype(np.float32)))))
    assert bpd == pytest.approx(card["value"], abs=2e-4)
    assert bpd < np.log2(17) - 1.5  # well below coding the 17 levels uniformly
    data = codec.compress(model, x)
    np.testing.assert_array_equal(codec.decompress(model, data), x)
    # within 1% of the model's own −log₂ P, plus the 48 bytes of header and checksum
    assert 8 * (len(data) - 48) <= 1.01 * bpd * x.size


# -- slow: the shipped model on the whole test set, and another process with oneDNN flipped -------------


@pytest.fixture(scope="module")
def shipped() -> IDF:
    if not os.path.exists(SHIPPED):
        pytest.skip(f"no shipped codec model at {SHIPPED}")
    return keras.models.load_model(SHIPPED)


@pytest.mark.slow
def test_whole_test_set_round_trip(shipped):
    x = load_images("fashion_mnist", "test")
    data = codec.compress(shipped, x)
    np.testing.assert_array_equal(codec.decompress(shipped, data), x)
    assert 8 * len(data) / x.size <= 3.5


_OTHER_PROCESS = """
import json, sys, numpy as np, keras, tfflows.codec as codec
from tfflows.data.images import load_images
for which, model_path, file, n, dataset in json.loads(sys.argv[1]):
    model = keras.models.load_model(model_path)
    data = open(file, "rb").read()
    x = load_images(dataset, "test")[:n]
    assert np.array_equal(codec.decompress(model, data), x), f"{which}: decoded images differ"
    assert codec.compress(model, x) == data, f"{which}: re-encoded bytes differ"
    print(which, "same")
"""


@pytest.mark.slow
def test_another_process_with_onednn_flipped_decodes_the_same_bits(tiny_file, tmp_path, request):
    """One other process (TensorFlow imported once) decodes and re-encodes each model's file."""
    cases = [("tiny", tiny_file, "fashion_mnist"), ("digits", SHIPPED_DIGITS, "digits")]
    if os.path.exists(SHIPPED):
        cases.append(("fashion_mnist", SHIPPED, "fashion_mnist"))
    n = 300
    plan = []
    for which, path, dataset in cases:
        model = keras.models.load_model(path)
        x = load_images(dataset, "test")[:n]
        file = tmp_path / f"{which}.tffc"
        file.write_bytes(codec.compress(model, x))
        plan.append([which, path, str(file), n, dataset])
    env = dict(os.environ)
    env["TF_ENABLE_ONEDNN_OPTS"] = "0" if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0" else "1"
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env.get("PYTHONPATH", "")]
    )
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, json.dumps(plan)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [line for line in done.stdout.splitlines() if line.endswith(" same")]
    assert reports == [f"{which} same" for which, *_ in plan], done.stdout[-2000:]
    if len(cases) < 3:
        request.getfixturevalue("shipped")  # skips, naming the missing model, as the fixture does


def test_idf_loss_weights_its_examples(tiny, images):
    """fit(x, sample_weight=w) trains on Σ wᵢ·nllᵢ / Σ wᵢ, as every tfflows model does."""
    x = images[:4].astype(np.float32)
    log_p = tiny.log_prob(x)
    w = np.array([1.0, 0.0, 2.0, 1.0], np.float32)
    weighted = float(tiny.compute_loss(y_pred=log_p, sample_weight=w))
    assert weighted == pytest.approx(float(-(w * log_p.numpy()).sum() / w.sum()), rel=1e-6)
    assert float(tiny.compute_loss(y_pred=log_p)) == pytest.approx(float(-log_p.numpy().mean()), rel=1e-6)
