"""Lossless compression of a test set: tfflows.codec against PNG, WebP, xz, bz2 and zlib.

Each codec runs in its own process (``--only NAME``) on the same CPU; the
driver collects their JSON and prints the Markdown table of BENCHMARKS.md.
Every figure is from actual bytes (headers included) and every image is
decoded and compared byte for byte.

    python bench/codec.py --model saved_models/idf_fashion_mnist/model.keras
    python bench/codec.py --dataset digits --model saved_models/idf_digits/model.keras

PNG and WebP code one image at a time (as a file per image would be); xz,
bz2 and zlib see the whole set as one raw array. tfflows codec: ``stream``
is one range-coder message for the whole set, ``random access`` one per
image plus an index (each image decodes on its own).
"""

from __future__ import annotations

import argparse
import bz2
import io
import json
import lzma
import os
import subprocess
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.machine import cpu_name

SYSTEMS = ("png", "webp", "zlib", "bz2", "xz", "idf")


def _images(dataset: str, n: int | None) -> np.ndarray:
    from tfflows.data.images import load_images

    return load_images(dataset, "test")[:n]


def _per_image(x: np.ndarray, encode, decode) -> dict:
    start = time.perf_counter()
    blobs = [encode(image) for image in x]
    enc = time.perf_counter() - start
    start = time.perf_counter()
    exact = sum(int(np.array_equal(decode(blob), image)) for blob, image in zip(blobs, x))
    dec = time.perf_counter() - start
    return dict(bytes=sum(len(b) for b in blobs), exact=exact, encode_s=enc, decode_s=dec)


def _whole(x: np.ndarray, encode, decode) -> dict:
    start = time.perf_counter()
    blob = encode(x.tobytes())
    enc = time.perf_counter() - start
    start = time.perf_counter()
    back = np.frombuffer(decode(blob), dtype=np.uint8).reshape(x.shape)
    dec = time.perf_counter() - start
    return dict(
        bytes=len(blob), exact=int(np.sum(np.all(back == x, axis=(1, 2, 3)))), encode_s=enc, decode_s=dec
    )


def run_one(name: str, args: argparse.Namespace) -> dict:
    x = _images(args.dataset, args.n)
    if name in ("png", "webp"):
        from PIL import Image

        options = (
            dict(format="PNG", optimize=True, compress_level=9)
            if name == "png"
            else dict(format="WEBP", lossless=True, quality=100, method=6)
        )

        def encode(image):
            buf = io.BytesIO()
            Image.fromarray(image[..., 0]).save(buf, **options)
            return buf.getvalue()

        def decode(blob):
            with Image.open(io.BytesIO(blob)) as im:
                return np.asarray(im.convert("L"))[..., None]

        result = _per_image(x, encode, decode)
    elif name == "zlib":
        result = _whole(x, lambda b: zlib.compress(b, 9), zlib.decompress)
    elif name == "bz2":
        result = _whole(x, lambda b: bz2.compress(b, 9), bz2.decompress)
    elif name == "xz":
        result = _whole(x, lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress)
    else:
        result = _run_idf(x, args)
    result.update(system=name, n=len(x), dims=int(x[0].size), cpu=cpu_name())
    return result


def _run_idf(x: np.ndarray, args: argparse.Namespace) -> dict:
    import keras

    import tfflows.codec as codec

    model = keras.models.load_model(args.model)
    coder = codec.Codec(model)
    out: dict = {}
    if "stream" not in args.layouts:  # the model's figures go with the stream
        nats = twin = np.zeros(1)
    else:
        nats = np.concatenate(
            [np.asarray(model.log_prob(x[i : i + 500].astype(np.float32))) for i in range(0, len(x), 500)]
        )
        twin = np.concatenate(
            [
                np.asarray(coder.twin.log_prob(x[i : i + 500].astype(np.float64)))
                for i in range(0, len(x), 500)
            ]
        )
    out["model_bits_float32"] = float(-nats.sum() / np.log(2.0))
    out["model_bits"] = float(-twin.sum() / np.log(2.0))
    for layout in args.layouts:
        start = time.perf_counter()
        data = coder.compress(x, layout=layout)
        enc = time.perf_counter() - start
        if layout == "stream":
            out["information_bits"] = float(np.sum(coder.last_information))
            out["fallback_images"] = int(coder.last_fallback.sum())
        start = time.perf_counter()
        back = coder.decompress(data)
        dec = time.perf_counter() - start
        out[layout] = dict(
            bytes=len(data), exact=int(np.sum(np.all(back == x, axis=(1, 2, 3)))), encode_s=enc, decode_s=dec
        )
    if args.check_index and "random_access" in args.layouts:
        picks = np.random.default_rng(0).choice(len(x), size=min(len(x), args.check_index), replace=False)
        start = time.perf_counter()
        same = sum(int(np.array_equal(coder.decompress(data, index=int(i)), x[i])) for i in picks)
        out["by_index"] = dict(checked=len(picks), exact=same, decode_s=time.perf_counter() - start)
    return out


def _bpd(nbytes: float, r: dict) -> float:
    return 8.0 * nbytes / (r["n"] * r["dims"])


def table(results: dict) -> str:
    rows = [
        "| codec | bits/dim (actual bytes, header included) | decoded exactly "
        "| encode / decode ms per image |",
        "|---|---|---|---|",
    ]

    def ms(r: dict) -> str:
        return f"{1000 * r['encode_s'] / r['n']:.2f} / {1000 * r['decode_s'] / r['n']:.2f}"

    labels = {
        "png": "PNG (per image, optimize, level 9)",
        "webp": "WebP lossless (per image, method 6)",
        "zlib": "zlib level 9 (whole set)",
        "bz2": "bz2 level 9 (whole set)",
        "xz": "xz preset 9e (whole set)",
    }
    for name in ("png", "webp", "zlib", "bz2", "xz"):
        if name in results:
            r = results[name]
            exact = f"{r['exact']:,}" if name in ("png", "webp") else f"{r['exact']:,} (one array)"
            rows.append(f"| {labels[name]} | {_bpd(r['bytes'], r):.3f} | {exact} | {ms(r)} |")
    if "idf" in results and "stream" in results["idf"]:
        r = results["idf"]
        dims = r["n"] * r["dims"]
        rows.append(
            f"| the model's own −log₂ P(x) (float64, as coded) | {r['model_bits'] / dims:.3f} | — | — |"
        )
        for layout, label in (
            ("stream", "**tfflows codec, one stream**"),
            ("random_access", "tfflows codec, random access"),
        ):
            if layout not in r:  # --layouts left it out
                continue
            s = r[layout]
            rows.append(
                f"| {label} | {_bpd(s['bytes'], r):.3f} | {s['exact']:,} | "
                f"{1000 * s['encode_s'] / r['n']:.2f} / {1000 * s['decode_s'] / r['n']:.2f} |"
            )
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--model", default="saved_models/idf_fashion_mnist/model.keras")
    parser.add_argument("--n", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument(
        "--only", choices=SYSTEMS, default=None, help="run one system here (the driver's child)"
    )
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument(
        "--check-index",
        type=int,
        default=200,
        help="also decode this many random images by index from the random-access file",
    )
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=("stream", "random_access"),
        default=["stream", "random_access"],
        help="the codec's layouts to run (idf)",
    )
    parser.add_argument("--json-out", default=None)
    parser.add_argument(
        "--json-in",
        nargs="+",
        default=[],
        help="earlier --json-out files whose systems are reused (not rerun)",
    )
    args = parser.parse_args(argv)
    if args.only:
        print(json.dumps(run_one(args.only, args)))
        return 0
    results: dict = {}
    for path in args.json_in:
        with open(path) as f:
            results.update(json.load(f))
    for name in [s for s in args.systems if s not in results]:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--only",
            name,
            "--dataset",
            args.dataset,
            "--model",
            args.model,
            "--check-index",
            str(args.check_index),
            "--layouts",
            *args.layouts,
        ]
        if args.n:
            cmd += ["--n", str(args.n)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name}: done", file=sys.stderr, flush=True)
    if args.json_out:  # first: the figures are kept whatever the printing below does
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1)
    if "idf" in results and "stream" in results["idf"]:
        r = results["idf"]
        dims = r["n"] * r["dims"]
        stream = 8 * r["stream"]["bytes"]
        print(
            f"stream bytes / model's −log₂ P: {stream / r['model_bits']:.4f}; coder's own information "
            f"{r['information_bits'] / dims:.4f} bits/dim; "
            f"float32 model {r['model_bits_float32'] / dims:.4f} "
            f"bits/dim; "
            + (
                f"random access − stream: "
                f"{8 * (r['random_access']['bytes'] - r['stream']['bytes']) / dims:.4f} bits/dim "
                f"({(r['random_access']['bytes'] - r['stream']['bytes']) / r['n']:.2f} bytes per image); "
                if "random_access" in r
                else ""
            )
            + f"fallback images {r['fallback_images']}; by index: {r.get('by_index')}"
        )
    print(
        f"{args.dataset} test set, {next(iter(results.values()))['n']} images; CPU: "
        f"{next(iter(results.values()))['cpu']}"
    )
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
