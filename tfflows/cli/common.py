"""What several subcommands share: data, pipelines, models, run folders and one-line errors.

Public inside :mod:`tfflows.cli`; nothing here imports TensorFlow at import time.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tfflows.cli.parser import TOY_DATASETS

if TYPE_CHECKING:  # the CLI imports NumPy, TensorFlow and the models only when a command runs
    import argparse

    import numpy as np
    import tensorflow as tf

    from tfflows.models.base import FlowModel

__all__ = [
    "load_data",
    "pipeline",
    "build_model",
    "RUN_FILES",
    "RUN_FOLDERS",
    "previous_run",
    "remove_run",
    "pixel_range",
    "check_model_file",
    "load_model",
    "recorded_source",
    "DEBUG_ENV",
    "one_line",
    "apply_data_defaults",
    "tabular_options",
    "batch_size_for",
    "warmup_for",
]


def load_data(
    dataset: str,
    data_dir: str | None,
    split: str,
    num_bits: int | None,
    max_n: int | None = None,
    with_labels: bool = False,
    columns: str | Sequence[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    test_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray | None, int | None, int | None]:
    """Returns (array, labels or None, num_bits, source_bits) for images, toys or a CSV file.

    A CSV file's rows are split (seeded) into "train", "validation" and "test"
    rows that share none (:func:`tfflows.data.tabular.split_table`); "all" is
    every row. With ``test_fraction`` 0 (runs recorded before the three-way
    split) "test" and "validation" are the same held-out ``val_fraction``.
    A 2-D toy's "validation" split is its own seeded sample, apart from "test".
    """
    import numpy as np

    from tfflows import data
    from tfflows.data.tabular import check_columns_flag, is_csv, load_csv, split_rows, split_table

    check_columns_flag(dataset, columns)
    if is_csv(dataset):
        values, _ = load_csv(dataset, columns.split(",") if isinstance(columns, str) else columns)
        if test_fraction:
            parts = split_table(len(values), val_fraction, test_fraction, seed)
        else:
            train_rows, val_rows = split_rows(len(values), val_fraction, seed)
            parts = {"train": train_rows, "validation": val_rows, "test": val_rows}
        rows = parts.get(split)
        if rows is None and split != "all":
            raise ValueError(
                f"expected a split of a CSV file among train, validation, test and all, got {split!r}."
            )
        part = values if rows is None else values[rows]
        return part[:max_n].astype("float32") if max_n else part.astype("float32"), None, None, None
    if dataset in TOY_DATASETS:
        n = {"train": 50000, "test": 20000, "validation": 20000}.get(split, 20000)
        seed = {"train": 1, "validation": 3}.get(split, 2)
        return data.sample_toy(dataset, max_n or n, seed=seed), None, None, None
    loaded = data.load_images(dataset, split=split, data_dir=data_dir, with_labels=with_labels)
    images, labels = loaded if with_labels else (loaded, None)
    if max_n:
        images = images[:max_n]
        labels = None if labels is None else labels[:max_n]
    source_bits = data.num_bits_of(dataset)
    return np.asarray(images), labels, num_bits or source_bits, source_bits


def pipeline(
    arr: np.ndarray,
    labels: np.ndarray | None,
    num_bits: int | None,
    source_bits: int | None,
    batch_size: int,
    shuffle: bool,
    seed: int,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    import tensorflow as tf

    from tfflows import data

    # Training drops the last short batch (a different one each epoch): every batch then has
    # one static size, which XLA needs to compile the step.
    drop_remainder = drop_remainder and len(arr) >= batch_size
    if num_bits is None:  # toys: real-valued points
        ds = tf.data.Dataset.from_tensor_slices(arr.astype("float32"))
        if shuffle:
            ds = ds.shuffle(len(arr), seed=seed)
        return data.steady(ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(2))
    return data.make_dataset(
        arr,
        labels=labels,
        batch_size=batch_size,
        num_bits=num_bits,
        source_bits=source_bits,
        shuffle=shuffle,
        seed=seed,
        drop_remainder=drop_remainder,
    )


def build_model(
    args: argparse.Namespace, event_shape: Sequence[int], num_bits: int | None, num_classes: int | None
) -> FlowModel:
    """The model ``--model`` names for data of ``event_shape``, built by its registry entry."""
    from tfflows.models.registry import BuildOptions, get_model

    kind = "vector" if len(event_shape) == 1 else "image"
    try:
        entry = get_model(args.model, kind)
    except ValueError as err:
        raise ValueError(f"{err} (shape {tuple(event_shape)})") from None
    extra = {
        key: getattr(args, key, None)
        for key in ("patch_size", "heads", "noise", "noise_std", "label_dropout", "dropout")
    }
    reads: set[str] = set()

    class ReadDict(dict):
        """The model-specific options, noting which ones the builder reads."""

        def get(self, key: Any, default: Any = None) -> Any:
            reads.add(f"extra.{key}")
            return super().get(key, default)

        def __getitem__(self, key: Any) -> Any:
            reads.add(f"extra.{key}")
            return super().__getitem__(key)

    class ReadOptions(BuildOptions):
        """BuildOptions noting which of them the entry's builder reads (a flag it never reads is refused)."""

        def __getattribute__(self, name: str) -> Any:
            if not name.startswith("_"):
                reads.add(name)
            return super().__getattribute__(name)

    options = ReadOptions(
        event_shape=tuple(int(d) for d in event_shape),
        num_bits=num_bits,
        num_classes=num_classes,
        num_levels=args.levels,
        num_steps=args.steps,
        width=args.width if args.width is not None else BuildOptions.width,
        depth=_depth(args),
        coupling=args.coupling,
        seed=args.seed,
        standardize=not getattr(args, "no_standardize", False),
        # Every model takes the policy (as a Keras layer does); older argument sets have none.
        dtype=getattr(args, "dtype", None) or "float32",
        backprop=getattr(args, "backprop", None) or "store",
        extra=ReadDict({k: v for k, v in extra.items() if v is not None}),
    )
    model = entry.build(options)
    given = {f"extra.{k}": (f"--{k.replace('_', '-')}", v) for k, v in extra.items() if v is not None}
    if _depth(args) is not None:
        blocks = getattr(args, "blocks", None)
        given["depth"] = ("--blocks", blocks) if blocks is not None else ("--depth", args.depth)
    if getattr(args, "num_bits", None) is not None:
        given["num_bits"] = ("--num-bits", args.num_bits)
    unused = [f"{flag} {value}" for key, (flag, value) in given.items() if key not in reads]
    if unused:
        raise ValueError(
            f"expected only options that --model {args.model} on {kind} data takes, got "
            f"{', '.join(unused)}, which it does not use; leave {'them' if len(unused) > 1 else 'it'} out."
        )
    return model


def _depth(args) -> int | None:
    """``--depth``, or the deprecated ``--blocks`` (RealNVP's residual blocks) it replaced."""
    blocks = getattr(args, "blocks", None)
    if blocks is None:
        return getattr(args, "depth", None)
    if getattr(args, "depth", None) is not None:
        raise ValueError(
            f"expected --depth or its deprecated old name --blocks, not both; got "
            f"--depth {args.depth} and --blocks {blocks}."
        )
    print("tfflows train: --blocks is deprecated and goes in the next release; use --depth.", file=sys.stderr)
    return blocks


RUN_FILES = ("results.json", "model.keras")
RUN_FOLDERS = ("checkpoints", "backup", "samples", "tensorboard")
"""What ``tfflows train`` writes in ``--out``: all that ``--overwrite`` removes."""


def previous_run(out: str) -> str | None:
    """``"finished"``, ``"interrupted"`` or ``None``: what an earlier ``train`` left in ``out``."""
    if not out.strip():
        raise ValueError(f"--out: expected a folder for the run, got {out!r}.")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} is not a folder.")
    found = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    if found:
        return f"a finished run ({', '.join(found)})"
    found = [
        d + "/"
        for d in RUN_FOLDERS
        if os.path.isdir(os.path.join(out, d)) and os.listdir(os.path.join(out, d))
    ]
    if found:
        return f"an interrupted run ({', '.join(found)}; no results.json)"
    return None


def remove_run(out: str) -> None:
    """Removes what an earlier run wrote in ``out``: results.json first, model.keras last."""
    import shutil

    from tfflows.io import is_temporary

    results = os.path.join(out, "results.json")
    if os.path.exists(results):
        os.remove(results)  # first: a removal killed half-way leaves no "finished" mark
    for folder in RUN_FOLDERS:
        shutil.rmtree(os.path.join(out, folder), ignore_errors=True)
    for name in os.listdir(out):
        if name == "model.keras" or (is_temporary(name) and name.startswith((".results", ".model"))):
            os.remove(os.path.join(out, name))


def pixel_range(images: np.ndarray, num_bits: int | None, source_bits: int | None) -> list[int] | None:
    """The lowest and highest pixel level of ``images`` at ``num_bits``.

    None for vector data (no ``num_bits``), or when the images hold one level.

    Sample pictures draw this range black to white: the 8×8 digits use levels
    0..16 of 32, which would otherwise never be brighter than mid-grey.
    """
    import numpy as np

    if num_bits is None or source_bits is None or len(images) == 0:
        return None
    shift = 2 ** (source_bits - num_bits)
    low, high = (int(np.floor(float(v) / shift)) for v in (np.min(images), np.max(images)))
    return [low, high] if low < high else None


def check_model_file(path: str) -> None:
    """Refuses, before Keras reads it, what cannot be a ``.keras`` file.

    (Keras would call it "File not found".)
    """
    import zipfile

    if not os.path.exists(path):
        raise ValueError(f"no model file at {path!r}.")  # bad input: exit status 2
    if os.path.isdir(path):
        raise ValueError(f"expected a .keras model file written by tfflows train, got the folder {path!r}.")
    if not path.endswith(".keras"):
        raise ValueError(f"expected a .keras model file written by tfflows train, got {path!r}.")
    broken = (
        f"could not load the model file {path!r}: not a readable .keras model file (truncated or corrupt?)"
    )
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{broken}: expected a zip archive, got {os.path.getsize(path)} bytes that are not one."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{broken}: {err}.") from None
    if damaged is not None:
        raise ValueError(f"{broken}: its member {damaged!r} fails its checksum.")
    if "config.json" not in names:
        raise ValueError(f"{broken}: expected config.json in the archive, got {sorted(names)[:5]}.")


def load_model(path: str) -> FlowModel:
    import keras

    import tfflows

    tfflows.register_keras_objects()
    check_model_file(path)
    try:
        model = keras.models.load_model(path)
    except Exception as err:  # a missing class, a damaged weights file, another format …
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise ValueError(
            f"could not load the model file {path!r} (expected a .keras file written "
            f"by tfflows; got {type(err).__name__}: {first})"
        ) from err
    if not isinstance(model, tfflows.models.FlowModel):
        raise ValueError(f"expected a tfflows flow model in {path!r}, got a {type(model).__name__}.")
    return model


def recorded_source(model_path: str) -> dict:
    """The results.json beside ``model_path`` (``{}`` where there is none)."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "results.json")
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
        if not isinstance(recorded, dict) or not isinstance(recorded.get("dataset"), str):
            raise ValueError("no 'dataset' entry")
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{path!r} is unreadable (expected the JSON that tfflows train writes, "
            f"with a 'dataset'; got {type(err).__name__}: {err}); pass --dataset."
        ) from err
    recorded["path"] = path
    return recorded


DEBUG_ENV = "TFFLOWS_DEBUG"
"""Set to 1 for the full traceback of any failure instead of its one-line message."""


def one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


IMAGE_BATCH_SIZE = 64
MAX_WARMUP = 200


def batch_size_for(num_train: int, vector: bool) -> int:
    """``tfflows train``'s default batch size: 64 for images; 16 to 64 for vector data, from the rows.

    A small table gets small batches (about a sixteenth of its rows, as a power of two), so an epoch
    still holds enough steps to train and to stop early on.
    """
    if not vector:
        return IMAGE_BATCH_SIZE
    return int(min(64, max(16, 2 ** math.floor(math.log2(max(num_train, 1) / 16)))))


def warmup_for(planned_steps: int, warmup: int | None) -> tuple[int, str | None]:
    """(warmup steps, a warning or None): by default a tenth of the planned steps, at most 200.

    A warmup the user set that is as long as the run itself is kept, with a warning: the
    learning rate would never reach its set value.
    """
    if warmup is None:
        return min(MAX_WARMUP, planned_steps // 10), None
    if planned_steps and warmup >= planned_steps:
        return warmup, (
            f"--warmup {warmup} is not shorter than the run's {planned_steps} planned steps: the learning "
            "rate never reaches --lr (omit --warmup for a tenth of the run)"
        )
    return warmup, None


def apply_data_defaults(
    args: argparse.Namespace, num_train: int, vector: bool, num_features: int | None = None
) -> dict[str, Any]:
    """Fills ``args.batch_size`` and ``args.warmup`` left unset, from the data; returns what was chosen.

    For vector data also the conditioners' ``--width`` and ``--dropout`` from
    :func:`tfflows.models.vector.vector_defaults`. Warns (on stderr) when a
    warmup the user set outlasts the run.
    """
    chosen = {}
    if vector and num_features is not None:
        from tfflows.models.vector import vector_defaults

        sizes = vector_defaults(num_train, num_features)
        for key in ("width", "dropout"):
            if getattr(args, key, None) is None:
                setattr(args, key, sizes[key])
                chosen[key] = sizes[key]
    if args.batch_size is None:
        args.batch_size = batch_size_for(num_train, vector)
        chosen["batch_size"] = args.batch_size
    per_epoch = args.steps_per_epoch or max(num_train // args.batch_size, 1)
    planned = per_epoch * args.epochs
    given = args.warmup
    args.warmup, warning = warmup_for(planned, given)
    if given is None:
        chosen["warmup"] = args.warmup
    if warning:
        print(f"tfflows train: warning: {warning}", file=sys.stderr)
    return chosen


def tabular_options(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`load_data`'s options for vector data from ``train``'s flags (columns, fractions, seed)."""
    return {
        "columns": args.columns,
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "seed": args.seed,
    }
