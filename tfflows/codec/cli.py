"""``tfflows compress`` and ``tfflows decompress``: the codec's subcommands (parsers and handlers).

:func:`tfflows.cli.parser.build_parser` adds these parsers with :func:`add_parsers`, and
:data:`tfflows.cli.COMMANDS` names the handlers; failures are ``ValueError`` / ``OSError`` there, printed as
one line with exit status 2.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["HANDLERS", "IMAGE_SUFFIXES", "add_parsers", "compress_files", "decompress_file", "read_images"]

IMAGE_SUFFIXES = (".png", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm", ".webp")
"""Lossless formats ``tfflows compress`` reads (a folder is searched for these, sorted by name)."""


def add_parsers(sub: Any) -> None:
    """Adds ``compress`` and ``decompress`` to the ``tfflows`` subparsers."""
    compress = sub.add_parser(
        "compress",
        help="losslessly compress images with an integer discrete flow (--model idf)",
        description="Codes images (files, or folders of PNG/BMP/... files, taken in sorted order) into one "
        "file with a trained IDF model. `tfflows decompress` with the same model gives them back "
        "bit for bit, as 00000.png, 00001.png, ... in the same order.",
    )
    compress.add_argument("model_path", help="a .keras IDF model written by `tfflows train --model idf`")
    compress.add_argument("images", nargs="+", help="image files or folders of them")
    compress.add_argument("-o", "--out", required=True, help="the compressed file to write")
    compress.add_argument(
        "--layout",
        choices=("stream", "random-access"),
        default="stream",
        help="stream: smallest; random-access: each image decodes on its own",
    )
    compress.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    decompress = sub.add_parser("decompress", help="decode a file of `tfflows compress` into PNG images")
    decompress.add_argument("model_path", help="the .keras IDF model the file was compressed with")
    decompress.add_argument("file", help="a file written by `tfflows compress`")
    decompress.add_argument("-o", "--out", required=True, help="the folder to write (must not exist)")
    decompress.add_argument(
        "--index", type=int, default=None, help="decode only this image (random-access files)"
    )
    decompress.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def _image_files(paths: list[str]) -> list[str]:
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, f)
                for f in os.listdir(path)
                if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith(".")
            )
            if not found:
                raise ValueError(
                    f"the folder {path!r} holds no images (expected files ending in "
                    f"{', '.join(IMAGE_SUFFIXES)})."
                )
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ValueError(f"no image file or folder at {path!r}.")
    return files


def read_images(paths: list[str], shape: tuple[int, int, int]) -> np.ndarray:
    """The images at ``paths`` (files or folders) as uint8 ``[N, H, W, C]``, each checked against ``shape``.

    Raises:
      ValueError: a file that is not a readable image of ``shape`` (one line naming it).
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    mode = {1: "L", 3: "RGB"}.get(shape[2])
    out = []
    for file in _image_files(paths):
        try:
            with Image.open(file) as image:
                if mode is None or image.mode != mode:
                    raise ValueError(
                        f"{file!r} is a {image.mode} image; the model codes {shape[2]}-channel "
                        f"images (mode {mode or 'none'}). Convert it losslessly first."
                    )
                arr = np.asarray(image)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"could not read {file!r} as an image: {err}") from None
        height, width = arr.shape[:2]
        arr = arr.reshape((height, width, shape[2]))
        if arr.shape != tuple(shape) or arr.dtype != np.uint8:
            raise ValueError(
                f"{file!r} is a {width}×{height} {arr.dtype} image; the model codes "
                f"{shape[1]}×{shape[0]} uint8 images."
            )
        out.append(arr)
    return np.stack(out)


def _load_codec_model(path: str):
    import keras

    import tfflows
    from tfflows.models.idf import IDF

    if not os.path.isfile(path):
        raise ValueError(f"no model file at {path!r} (expected a .keras IDF written by tfflows train).")
    if not path.endswith(".keras"):
        raise ValueError(f"expected a .keras model file, got {path!r}.")
    tfflows.register_keras_objects()
    try:
        model = keras.models.load_model(path)
    except Exception as err:  # a missing class, damaged weights, another format …
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"could not load the model file {path!r}: {type(err).__name__}: {first}") from err
    if not isinstance(model, IDF):
        raise ValueError(
            f"{path!r} holds a {type(model).__name__}; the codec needs an integer discrete flow "
            "(train one with `tfflows train --model idf`)."
        )
    return model


def compress_files(args: argparse.Namespace) -> dict:
    """``tfflows compress``: reads the images, writes the compressed file atomically; returns its figures."""
    from tfflows.codec import compress
    from tfflows.io import atomic_path

    if os.path.exists(args.out) and not args.overwrite:
        raise ValueError(f"{args.out!r} exists; pass --overwrite to replace it.")
    model = _load_codec_model(args.model_path)
    images = read_images(args.images, model.event_shape)
    data = compress(model, images, layout=args.layout.replace("-", "_"))
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    bits = 8 * len(data) / images.size
    print(f"tfflows compress: {len(images)} images → {args.out} ({len(data)} bytes, {bits:.3f} bits/dim)")
    return {"images": len(images), "bytes": len(data), "bits_per_dim": bits}


def decompress_file(args: argparse.Namespace) -> int:
    """``tfflows decompress``: decodes the file, writes numbered PNGs into a new folder atomically."""
    from PIL import Image

    from tfflows.codec import decompress
    from tfflows.io import atomic_dir

    if os.path.exists(args.out) and not args.overwrite:
        raise ValueError(f"{args.out!r} exists; pass --overwrite to replace it.")
    if os.path.isdir(args.file):
        raise ValueError(f"expected a compressed file, got the folder {args.file!r}.")
    if not os.path.isfile(args.file):
        raise ValueError(f"no compressed file at {args.file!r}.")
    model = _load_codec_model(args.model_path)
    with open(args.file, "rb") as f:
        data = f.read()
    images = decompress(model, data, index=args.index)
    if args.index is not None:
        images, first = images[None], args.index
    else:
        first = 0
    with atomic_dir(args.out, overwrite=args.overwrite) as tmp:
        for i, image in enumerate(images):
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
                os.path.join(tmp, f"{first + i:05d}.png")
            )
    print(f"tfflows decompress: {len(images)} images → {args.out}/")
    return len(images)


HANDLERS = {"compress": compress_files, "decompress": decompress_file}
"""Subcommand name → handler, for ``tfflows.cli.main``."""
