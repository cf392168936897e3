"""Image datasets as uint8 numpy arrays, from local files first, TFDS second.

Every source returns channels-last ``[N, H, W, C]`` uint8 images (``C = 1`` for
grayscale) and, on request, int32 labels:

- ``"mnist"``, ``"fashion_mnist"`` (and any name whose IDX files are present):
  the standard IDX files, gzipped or not, looked for in ``data_dir``, then in
  ``$TFFLOWS_DATA_DIR/<name>``, then, for Fashion-MNIST, where the Debian
  package ``dataset-fashion-mnist`` installs them. Failing that, TFDS.
- ``"digits"``: the 8x8 UCI digits embedded in the package (scikit-learn's
  copy, values 0..16), split by a fixed
  seeded permutation into 1,500 train and 297 test images.
- any other name: ``tensorflow_datasets.load(name, split=split)``, key
  ``"image"`` and, if present, ``"label"``.

TFDS keeps its own data directory (``TFDS_DATA_DIR``); ``data_dir`` here only
names a folder of IDX files. A TFDS dataset that is not prepared there is
downloaded only when the download host answers within a few seconds
(``$TFFLOWS_TFDS_PROBE``, ``host:port``, names another host to try);
otherwise, and for an unknown name, a one-line ``ValueError`` says so at once. TFDS's
checksums reject the Debian files (they are recompressed), which is why they are read
directly.
"""

from __future__ import annotations

import os
import socket
import threading

import numpy as np

from tfflows.data.idx import read_idx

__all__ = [
    "DATA_DIR_ENV",
    "DEBIAN_DATA_DIRS",
    "IDX_FILE_NAMES",
    "LOCAL_NAMES",
    "NATIVE_BITS",
    "TFDS_PROBE_ENV",
    "class_names",
    "idx_search_dirs",
    "load_images",
    "num_bits_of",
]

DATA_DIR_ENV = "TFFLOWS_DATA_DIR"
"""The environment variable naming a folder with ``<name>/`` IDX files."""
LOCAL_NAMES: tuple[str, ...] = ("digits", "fashion_mnist", "mnist")
"""Datasets read without TFDS: the embedded digits and the IDX files of Fashion-MNIST and MNIST."""
NATIVE_BITS: dict[str, int] = {"mnist": 8, "fashion_mnist": 8, "digits": 5}
"""Bits per pixel of each local dataset (the digits' values 0..16 need 5)."""
_DIGIT_NAMES = tuple(str(d) for d in range(10))
_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "digits": _DIGIT_NAMES,
    "mnist": _DIGIT_NAMES,
    "fashion_mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
}  # fmt: skip


def class_names(dataset: str) -> tuple[str, ...] | None:
    """The names of a local dataset's classes in label order, or None when tfflows does not know them.

    Fashion-MNIST's are its ten garment names (label 0 is "T-shirt/top"); MNIST's and the
    digits' are "0" to "9". Sample grids of class-conditional models label their columns with them.
    """
    return _CLASS_NAMES.get(dataset)


DEBIAN_DATA_DIRS: dict[str, str] = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}
"""Where Debian packages install a dataset's IDX files (``dataset-fashion-mnist``)."""
IDX_FILE_NAMES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""The IDX file names (images, labels) of each split."""
_SPLITS = tuple(IDX_FILE_NAMES)
_DIGITS_TRAIN_SIZE = 1500
_DIGITS_SEED = 0

Images = np.ndarray | tuple[np.ndarray, np.ndarray]


def num_bits_of(name: str) -> int:
    """Native bit depth of a dataset: 5 for ``"digits"`` (0..16), else 8."""
    return NATIVE_BITS.get(name, 8)


def idx_search_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Folders searched, in order, for the IDX files of ``name``.

    Args:
        name: Dataset name, e.g. ``"fashion_mnist"``.
        data_dir: Folder given by the caller, searched first.

    Returns:
        ``data_dir`` (if given), ``$TFFLOWS_DATA_DIR/<name>`` (if the variable is
        set) and the Debian package folder (for ``"fashion_mnist"``).
    """
    dirs = []
    if data_dir is not None:
        dirs.append(os.fspath(data_dir))
    if os.environ.get(DATA_DIR_ENV):
        dirs.append(os.path.join(os.environ[DATA_DIR_ENV], name))
    if name in DEBIAN_DATA_DIRS:
        dirs.append(DEBIAN_DATA_DIRS[name])
    return dirs


def _find_file(folder: str, stem: str) -> str | None:
    for candidate in (stem + ".gz", stem):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _load_idx(image_path: str, split: str, with_labels: bool) -> Images:
    folder = os.path.dirname(image_path)
    label_stem = IDX_FILE_NAMES[split][1]
    images = read_idx(image_path)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(
            f"IDX file {image_path!r}: expected uint8 images [N, H, W] or [N, H, W, C]; "
            f"got {images.dtype} {list(images.shape)}."
        )
    if images.ndim == 3:
        images = images[..., None]
    if not with_labels:
        return images
    label_path = _find_file(folder, label_stem)
    if label_path is None:
        raise ValueError(
            f"Found {image_path!r} but expected labels {label_stem}[.gz] beside it; got none in {folder!r}."
        )
    labels = read_idx(label_path)
    if labels.shape != images.shape[:1]:
        raise ValueError(
            f"IDX file {label_path!r}: expected labels of shape [{len(images)}]; got {list(labels.shape)}."
        )
    return images, labels.astype(np.int32)


DIGITS_ASSET = os.path.join(os.path.dirname(__file__), "assets", "digits.npz")


def _load_digits(split: str, with_labels: bool) -> Images:
    # The package embeds scikit-learn's copy of the UCI digits (45 kB), so
    # they load with no network and no scikit-learn.
    with np.load(DIGITS_ASSET) as digits:
        all_images, all_labels = digits["images"], digits["labels"]
    order = np.random.default_rng(_DIGITS_SEED).permutation(len(all_images))
    order = order[:_DIGITS_TRAIN_SIZE] if split == "train" else order[_DIGITS_TRAIN_SIZE:]
    images = all_images[order].astype(np.uint8)
    if not with_labels:
        return images
    return images, all_labels[order].astype(np.int32)


def _short(err: BaseException) -> str:
    """First line of an error plus any suggestion; TFDS lists ~400 datasets."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    kept = lines[:1] + [line for line in lines[1:] if line.startswith("Did you mean")]
    return f"{type(err).__name__}: {' '.join(kept)}"[:500]


TFDS_PROBE_ENV = "TFFLOWS_TFDS_PROBE"
"""``host:port`` tried before a TFDS download (default: Google Cloud Storage, where TFDS keeps data)."""
_TFDS_PROBE = "storage.googleapis.com:443"


def _reachable(address: str, timeout: float = 2.5) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds (name lookup included)."""
    host, _, port = address.rpartition(":")
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
            result.append(True)
        except (OSError, ValueError):
            result.append(False)

    # A thread bounds the name lookup too, which create_connection's timeout does not.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _prepared_tfds_names(root: str) -> list[str]:
    try:
        return sorted(
            d
            for d in os.listdir(root)
            if os.path.isdir(os.path.join(root, d)) and not d.startswith(("downloads", "."))
        )
    except OSError:
        return []


class _TfdsUnavailable(ValueError):
    """A TFDS dataset that is unknown or cannot be had now; the message says why."""


def _tfds_builder(name: str, download: bool):
    """The TFDS builder of ``name``, after failing fast on unknown names and offline downloads."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
    except tfds.core.registered.DatasetNotFoundError as err:
        hint = [line.strip() for line in str(err).splitlines() if line.strip().startswith("Did you mean")]
        root = os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
        raise _TfdsUnavailable(
            f"TFDS has no dataset {name!r} (DatasetNotFoundError): expected one of the local "
            f"names {list(LOCAL_NAMES)} or a TFDS name; prepared TFDS datasets in {root!r}: "
            f"{_prepared_tfds_names(root) or 'none'}.{' ' + hint[0] if hint else ''}"
        ) from None
    if download and not builder.is_prepared():
        probe = os.environ.get(TFDS_PROBE_ENV) or _TFDS_PROBE
        if not _reachable(probe):
            raise _TfdsUnavailable(
                f"TFDS dataset {name!r} is not downloaded (no prepared copy in "
                f"{builder.data_dir!r}) and the network is unreachable ({probe}), so it cannot be "
                f"downloaded now. On a machine with internet run `tfds build {name}` and copy "
                f"{str(getattr(builder, 'data_dir_root', '~/tensorflow_datasets'))!r} here, or set "
                "TFDS_DATA_DIR to a folder that holds it."
            )
    return builder


def _load_tfds(name: str, split: str, with_labels: bool, download: bool) -> Images:
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, download)
    if not download and not builder.is_prepared():
        raise _TfdsUnavailable(
            f"TFDS dataset {name!r} is not downloaded (no prepared copy in "
            f"{builder.data_dir!r}) and download=False."
        )
    data = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1, download=download))
    if not isinstance(data, dict) or "image" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"TFDS dataset {name!r}: expected an 'image' feature; got {keys}.")
    images = np.asarray(data["image"])
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"TFDS dataset {name!r}: expected uint8 images [N, H, W, C]; "
            f"got {images.dtype} {list(images.shape)}."
        )
    if not with_labels:
        return images
    if "label" not in data:
        raise ValueError(
            f"TFDS dataset {name!r}: expected a 'label' feature for with_labels=True; got {sorted(data)}."
        )
    return images, np.asarray(data["label"]).astype(np.int32)


def load_images(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    with_labels: bool = False,
    download: bool = True,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Loads a whole image dataset split into memory.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"``, ``"digits"`` or a TFDS name such
            as ``"cifar10"``.
        split: ``"train"`` or ``"test"`` for the local sources; any TFDS split
            string (``"train[:10%]"``) for the others.
        data_dir: Folder holding IDX files, searched before the default places.
        with_labels: Also return the labels.
        download: Passed to ``tfds.load``; ``False`` fails fast when the data is
            not already prepared, instead of trying the network.

    Returns:
        uint8 images ``[N, H, W, C]``, or ``(images, labels)`` with int32 labels
        ``[N]`` when ``with_labels``.

    Raises:
        ValueError: If ``split`` is not ``"train"``/``"test"`` for a local
            source, ``data_dir`` is given but is not a folder, or no source has the data; the
            message names every folder searched and the TFDS error.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"expected a dataset name such as 'digits' or a TFDS name, got {name!r}.")
    if name in LOCAL_NAMES and split not in _SPLITS:
        raise ValueError(f"split for {name!r} must be one of {list(_SPLITS)}; got {split!r}.")
    if data_dir is not None and not os.path.isdir(data_dir):
        # Never fall back silently to other data when the folder asked for is missing.
        raise ValueError(
            f"data_dir {os.fspath(data_dir)!r} does not exist or is not a folder "
            f"(expected a folder holding the IDX files of {name!r})."
        )
    if name == "digits":
        return _load_digits(split, with_labels)
    folders = idx_search_dirs(name, data_dir)
    if split in _SPLITS:
        for folder in folders:
            image_path = _find_file(folder, IDX_FILE_NAMES[split][0])
            if image_path is not None:
                return _load_idx(image_path, split, with_labels)
    try:
        return _load_tfds(name, split, with_labels, download)
    except _TfdsUnavailable as err:
        looked = f"{_where_looked(folders, split)} " if name in LOCAL_NAMES or folders else ""
        raise ValueError(f"Could not load image dataset {name!r} (split {split!r}). {looked}{err}") from None
    except ValueError:  # the data's features are not images (and labels)
        raise
    except Exception as err:  # any other TFDS failure is reported
        raise ValueError(
            f"Could not load image dataset {name!r} (split {split!r}). "
            f"{_where_looked(folders, split)} Local names: {list(LOCAL_NAMES)}. "
            f"TFDS fallback failed with {_short(err)}"
        ) from err


def _where_looked(folders: list[str], split: str) -> str:
    if split not in _SPLITS:
        return f"IDX files not searched: split {split!r} is not one of {list(_SPLITS)}."
    searched = ", ".join(repr(f) for f in folders) or "no folder"
    if not os.environ.get(DATA_DIR_ENV):
        searched += f" (${DATA_DIR_ENV} not set)"
    stem = IDX_FILE_NAMES[split][0]
    return f"Expected IDX file {stem}[.gz] in one of: {searched}; got none."
