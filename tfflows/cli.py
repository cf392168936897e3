"""The ``tfflows`` command line: train, evaluate, score (OOD), sample (and export)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Sequence

__all__ = ["DEBUG_ENV", "main", "build_parser"]

IMAGE_DATASETS = ("digits", "fashion_mnist", "mnist")
DEFAULT_STEPS = 4
DEFAULT_JET_COUPLINGS = 16
"""Jet's couplings each stretch a value at most 2×, and a value moves in half of them: 4
couplings could not take 8-bit data below about 7.3 bits/dim, 16 below about 1.3."""
IMAGE_MODELS = ("glow", "realnvp", "tarflow", "jet", "idf")
VECTOR_MODELS = ("nsf", "maf", "maf-spline")
TOY_DATASETS = ("two_moons", "8gaussians", "checkerboard", "rings")


VAL_EXAMPLES_TIMED = 2000
"""Validation examples per epoch of a run with ``--time-limit`` (the budget goes to training)."""

PROBE_MIN_STEPS = 1000
PROBE_MIN_MINUTES = 5.0
"""``--jit auto`` probes XLA only for runs planned at least this long: compiling costs
tens of seconds on a CPU (about 25 s for the Fashion-MNIST Glow on a quiet core)."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _float_in(accept, expected: str):
    """An argparse type: a float that ``accept`` takes, else "expected {expected}"."""
    def parse(text: str) -> float:
        value = float(text)
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
        return value
    parse.__name__ = "number"  # argparse's "invalid number value: 'abc'"
    return parse


_rate = _float_in(lambda v: 0.0 < v <= 1.0, "a probability in (0, 1]")
_positive_float = _float_in(lambda v: v > 0 and math.isfinite(v), "a finite number > 0")
_fraction = _float_in(lambda v: 0.0 < v < 1.0, "a fraction strictly between 0 and 1")
_dropout = _float_in(lambda v: 0.0 <= v < 1.0, "a probability in [0, 1)")
_finite = _float_in(math.isfinite, "a finite number")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfflows", description="Normalizing flows for TensorFlow.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train", help="train a flow (default: a small Glow on the embedded digits)",
        description="Train a flow. An --out that holds an earlier run, finished or interrupted, "
                    "is never retrained silently: the command stops unless --resume or "
                    "--overwrite says what to do with it.")
    train.add_argument("--model", choices=IMAGE_MODELS + VECTOR_MODELS, default="glow",
                       help="tarflow (transformer autoregressive flow over patches) and jet "
                            "(couplings with ViT conditioners over patches) are for images; "
                            "nsf (neural spline flow), maf (masked autoregressive flow) and "
                            "maf-spline (autoregressive neural spline flow: a MAF with 8-bin "
                            "rational-quadratic splines on [-5, 5]) are for vector data: the 2-D "
                            "toys and CSV files")
    train.add_argument("--dataset", default="digits",
                       help=f"image data {IMAGE_DATASETS} or any TFDS name, a 2-D toy {TOY_DATASETS}, "
                            "or a CSV file (FILE.csv: a header row, then numeric values)")
    tabular = train.add_argument_group("vector data (toys and CSV files)")
    tabular.add_argument("--columns", default=None,
                         help="CSV columns to model, comma-separated (default: all)")
    tabular.add_argument("--val-fraction", type=_fraction, default=0.2,
                         help="CSV rows held out (seeded by --seed) for validation and early stopping")
    tabular.add_argument("--patience", type=_positive_int, default=10,
                         help="early stopping: epochs without a better validation loss")
    tabular.add_argument("--no-early-stopping", action="store_true",
                         help="train all --epochs (default for vector data: stop early on the "
                              "validation loss and restore the best weights)")
    tabular.add_argument("--no-standardize", action="store_true",
                         help="leave out the Standardize step (mean and scale fitted on the "
                              "training data) that vector models start with")
    train.add_argument("--data-dir", default=None, help="folder with local IDX files")
    train.add_argument("--levels", type=_positive_int, default=2,
                       help="num_levels: the scales of Glow and RealNVP")
    train.add_argument("--steps", type=_positive_int, default=None,
                       help="num_steps: Glow steps per level (K); TarFlow's num_blocks; Jet's "
                            f"num_couplings (default {DEFAULT_STEPS} for every model, "
                            f"{DEFAULT_JET_COUPLINGS} for jet)")
    train.add_argument("--width", type=_positive_int, default=64,
                       help="hidden_channels of image models, hidden_units of vector models, the "
                            "transformer width of tarflow and jet")
    transformers = train.add_argument_group("transformer flows (tarflow, jet)")
    transformers.add_argument("--patch-size", type=_positive_int, default=4,
                              help="side of a patch (a token); must divide the image size")
    transformers.add_argument("--depth", type=_positive_int, default=None,
                              help="transformer blocks per flow block (tarflow, default 2) or per "
                                   "coupling's ViT (jet, default 1)")
    transformers.add_argument("--heads", type=_positive_int, default=4,
                              help="attention heads; must divide --width")
    transformers.add_argument("--noise", choices=("uniform", "gaussian"), default=None,
                              help="tarflow's training noise: uniform (default: the uniformly "
                                   "dequantized data, exact bits/dim) or gaussian (N(0, s^2) added "
                                   "to every batch, the paper's recipe for samples; sample with "
                                   "--denoise)")
    transformers.add_argument("--noise-std", type=_positive_float, default=None, metavar="S",
                              help="s of --noise gaussian on the data scaled to [-1, 1] "
                                   "(default 0.05, the paper's)")
    transformers.add_argument("--label-dropout", type=_dropout, default=None, metavar="P",
                              help="tarflow with --conditional: each label is replaced by the null "
                                   "class with probability P (default 0.1), which sampling with "
                                   "--guidance needs")
    train.add_argument("--blocks", type=_positive_int, default=2, help="num_blocks: RealNVP ResNet blocks")
    train.add_argument("--coupling", choices=("affine", "additive"), default="affine")
    train.add_argument("--conditional", action="store_true", help="class-conditional model")
    train.add_argument("--epochs", type=_positive_int, default=20)
    train.add_argument("--batch-size", type=_positive_int, default=64)
    train.add_argument("--lr", type=_positive_float, default=1e-3)
    train.add_argument("--warmup", type=int, default=200, help="learning-rate warmup steps")
    train.add_argument("--clipnorm", type=_positive_float, default=50.0)
    bits = train.add_mutually_exclusive_group()
    bits.add_argument("--num-bits", type=_positive_int, default=None,
                      help="bits per pixel (default: the dataset's own, 5 for digits)")
    bits.add_argument("--n-bits", dest="n_bits", type=_positive_int, default=None,
                      help="deprecated name of --num-bits")
    train.add_argument("--max-train", type=_positive_int, default=None, help="use only this many examples")
    train.add_argument("--time-limit", type=_positive_float, default=None,
                       help="stop training after this many minutes (checked every batch)")
    train.add_argument("--test-at", type=_positive_float, nargs="+", default=None, metavar="MINUTES",
                       help="also evaluate on the whole test split after these many minutes of "
                            "training, with the clock (and --time-limit) paused meanwhile; "
                            "results.json's test_at lists them")
    train.add_argument("--val-every", type=_positive_int, default=1,
                       help="evaluate on the test split every this many epochs")
    train.add_argument("--val-examples", type=_positive_int, default=None, metavar="N",
                       help="validate after each epoch on the first N test examples (default: "
                            f"all; with --time-limit {VAL_EXAMPLES_TIMED}); the final test figure "
                            "is always over the whole test split")
    train.add_argument("--steps-per-epoch", type=_positive_int, default=None,
                       help="batches per epoch (the data repeat); default: one pass")
    train.add_argument("--log-every", type=_positive_int, default=10, metavar="N",
                       help="write the loss and bits/dim to TensorBoard every N batches (sample "
                            "grids go there once per epoch)")
    train.add_argument("--backprop", choices=("store", "recompute", "reversible"), default="store",
                       help="store keeps every step's activations for the gradient; recompute keeps "
                            "each step's input and reruns it; reversible keeps only the output of "
                            "each run of steps and inverts it (memory that does not grow with depth; "
                            "not for tarflow or maf, whose inverse is sequential)")
    train.add_argument("--dtype", choices=("float32", "float64", "mixed_bfloat16", "mixed_float16"),
                       default="float32",
                       help="the model's Keras dtype policy: mixed_* run only the conditioner networks "
                            "in 16 bits (the flow, log-dets and loss stay float32); mixed_float16 "
                            "trains with a LossScaleOptimizer")
    train.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                       help="XLA for the train step (auto: time a few training steps with and "
                            "without XLA on this machine and keep the faster, when the run is "
                            f"planned for at least {PROBE_MIN_STEPS} steps and, with --time-limit, "
                            f"{PROBE_MIN_MINUTES:g} minutes; "
                            "shorter runs: Keras' choice, XLA on a GPU, off on a CPU)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--perturb", type=_rate, default=None, metavar="RATE",
                       help="train a background model for the likelihood-ratio OOD score: each "
                            "training pixel is replaced by a random value with this probability "
                            "(Ren et al. 2019 use 0.1-0.3)")
    train.add_argument("--out", default="runs/glow_digits",
                       help="output folder: model.keras, results.json, checkpoints/, backup/, "
                            "samples/, tensorboard/")
    rerun = train.add_mutually_exclusive_group()
    rerun.add_argument("--resume", action="store_true",
                       help="continue the run in --out (interrupted or finished) from its backup, "
                            "else from its newest checkpoint that loads, up to --epochs in total")
    rerun.add_argument("--overwrite", action="store_true",
                       help="start over: first remove the files an earlier run wrote in --out "
                            "(only those listed above)")
    train.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    cluster = train.add_argument_group(
        "multi-worker training (tfflows.distributed; also started by a TF_CONFIG variable)")
    cluster.add_argument("--workers", type=_positive_int, default=None,
                         help="workers in the cluster; this process is one of them")
    cluster.add_argument("--worker-index", type=int, default=None, help="this worker's place, 0 = chief")
    cluster.add_argument("--worker-hosts", default=None, metavar="HOST:PORT,...",
                         help="every worker's address, in index order (else read from TF_CONFIG)")
    cluster.add_argument("--join-timeout", type=_positive_float, default=120.0, metavar="SECONDS",
                         help="how long to wait for every worker to start")
    cluster.add_argument("--checkpoint-every", type=_positive_int, default=100, metavar="STEPS",
                         help="the chief writes checkpoints/step_* this often (and every epoch)")

    evaluate = sub.add_parser("evaluate", help="test bits/dim (or NLL) of a saved model")
    evaluate.add_argument("model_path", help="a .keras file written by tfflows train")
    evaluate.add_argument("--dataset", default=None, help="default: the one it was trained on")
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256)
    evaluate.add_argument("--seed", type=int, default=0)

    score = sub.add_parser(
        "score", help="out-of-distribution scores: AUROC/AUPR/FPR95 of every method",
        description="Scores the in-distribution test set and each OOD set with every OOD method "
                    "of tfflows.ood and prints AUROC, AUPR and FPR at 95%% TPR (OOD = positive). "
                    "Datasets: a name load_images knows (digits, fashion_mnist, mnist, ...), "
                    "NAME:class=K, NAME:without=K, or the synthetic noise and constant; other "
                    "image sizes are resized and pixels rescaled to 0..255.")
    score.add_argument("model_path", help="a .keras file written by tfflows train, or an exported "
                                          "SavedModel folder")
    score.add_argument("--in-dataset", default=None, help="default: the one it was trained on")
    score.add_argument("--ood-dataset", nargs="+", required=True, metavar="DATASET")
    score.add_argument("--background", default=None, metavar="MODEL",
                       help="a background model (tfflows train --perturb) for the likelihood ratio")
    score.add_argument("--data-dir", default=None)
    score.add_argument("--split", default="test")
    score.add_argument("--max-examples", type=_positive_int, default=None,
                       help="at most this many images per set (synthetic sets: 1000 by default)")
    score.add_argument("--train-examples", type=int, default=1000,
                       help="training images whose mean NLL centres the typicality score "
                            "(0: no typicality)")
    score.add_argument("--typicality-batch", type=_positive_int, default=10, metavar="M",
                       help="also run the typicality test on batches of M images (threshold by "
                            "bootstrap at 1%% false positives); needs --train-examples")
    score.add_argument("--batch-size", type=_positive_int, default=256)
    score.add_argument("--seed", type=int, default=0)
    score.add_argument("--json-out", default=None, help="also write the table as JSON here")

    sample = sub.add_parser("sample", help="draw samples from a saved model into a PNG")
    sample.add_argument("model_path")
    sample.add_argument("--out", default="samples.png")
    sample.add_argument("--num", type=_positive_int, default=10, help="samples per temperature")
    sample.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 0.7, 0.85, 1.0])
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--guidance", type=_finite, default=None, metavar="W",
                        help="class-conditional tarflow: classifier-free guidance weight W "
                             "(0: none)")
    sample.add_argument("--denoise", action="store_true",
                        help="tarflow trained with --noise gaussian: one score step "
                             "x + s^2 grad log p(x) after sampling")

    from tfflows.codec.cli import add_parsers as add_codec_parsers

    add_codec_parsers(sub)
    export = sub.add_parser("export", help="export a saved model as a TF Serving SavedModel")
    export.add_argument("model_path")
    export.add_argument("out_dir", help="the SavedModel base folder; a version folder goes inside")
    export.add_argument("--version", type=_positive_int, default=1)
    export.add_argument("--max-samples", type=_positive_int, default=4096,
                        help="the largest num_samples a sample request may ask for")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an existing SavedModel in that version folder")
    return parser


def _load_data(dataset: str, data_dir, split: str, num_bits, max_n=None, with_labels=False,
               columns=None, val_fraction=0.2, seed=0):
    """Returns (array, labels or None, num_bits, source_bits) for images, toys or a CSV file.

    A CSV file's rows are split (seeded) into "train" and the held-out
    ``val_fraction`` ("test" or "validation"); "all" is every row.
    """
    import numpy as np

    from tfflows import data
    from tfflows.data.tabular import is_csv, load_csv, split_rows

    if is_csv(dataset):
        values, _ = load_csv(dataset, columns.split(",") if isinstance(columns, str) else columns)
        train_rows, val_rows = split_rows(len(values), val_fraction, seed)
        rows = {"train": train_rows, "test": val_rows, "validation": val_rows}.get(split)
        if rows is None and split != "all":
            raise ValueError(f"expected a split of a CSV file among train, test (= validation) "
                             f"and all, got {split!r}.")
        part = values if rows is None else values[rows]
        return part[:max_n].astype("float32") if max_n else part.astype("float32"), None, None, None
    if dataset in TOY_DATASETS:
        n = {"train": 50000, "test": 20000}.get(split, 20000)
        seed = 1 if split == "train" else 2
        return data.sample_toy(dataset, max_n or n, seed=seed), None, None, None
    loaded = data.load_images(dataset, split=split, data_dir=data_dir, with_labels=with_labels)
    images, labels = loaded if with_labels else (loaded, None)
    if max_n:
        images = images[:max_n]
        labels = None if labels is None else labels[:max_n]
    source_bits = data.num_bits_of(dataset)
    return np.asarray(images), labels, num_bits or source_bits, source_bits


def _dataset(arr, labels, num_bits, source_bits, batch_size, shuffle, seed, drop_remainder=False):
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
    return data.make_dataset(arr, labels=labels, batch_size=batch_size, num_bits=num_bits,
                             source_bits=source_bits, shuffle=shuffle, seed=seed,
                             drop_remainder=drop_remainder)


def _worth_probing(args, num_train: int) -> bool:
    """Whether ``--jit auto`` times XLA: a run planned long enough to earn back its compilation."""
    per_epoch = args.steps_per_epoch or math.ceil(num_train / args.batch_size)
    return (args.epochs * per_epoch >= PROBE_MIN_STEPS
            and (args.time_limit is None or args.time_limit >= PROBE_MIN_MINUTES))


def _build_model(args, event_shape, num_bits, num_classes):
    import tfflows

    # Every model takes the policy (as a Keras layer does); older argument sets have none.
    policy = dict(dtype=getattr(args, "dtype", None) or "float32",
                  backprop=getattr(args, "backprop", None) or "store")
    if len(event_shape) == 1:
        if args.model in ("tarflow", "jet"):
            raise ValueError(f"--model {args.model} is an image flow over patches; use it with image "
                             f"data, got vector data of shape {tuple(event_shape)}.")
        common = dict(hidden_units=args.width, num_classes=num_classes, seed=args.seed,
                      standardize=not args.no_standardize, **policy)
        if args.model == "nsf":
            return tfflows.VectorNSF(event_shape[0], num_layers=args.steps * args.levels, **common)
        if args.model == "maf":
            return tfflows.VectorMAF(event_shape[0], num_layers=args.steps * args.levels, **common)
        if args.model == "maf-spline":
            return tfflows.VectorMAF(event_shape[0], num_layers=args.steps * args.levels,
                                     transform="spline", num_bins=8, bound=5.0, **common)
        if args.model == "glow":
            return tfflows.VectorGlow(event_shape[0], num_steps=args.steps * args.levels,
                                      coupling=args.coupling, **common)
        return tfflows.VectorRealNVP(event_shape[0], num_layers=args.steps * args.levels, **common)
    if args.model in VECTOR_MODELS:
        raise ValueError(f"--model {args.model} is a vector flow; use it with a 2-D toy dataset or a "
                         f"CSV file, got image data of shape {tuple(event_shape)}.")
    if args.model == "tarflow":
        given = {key: getattr(args, key, None) for key in ("noise", "noise_std", "label_dropout")}
        return tfflows.TarFlow(event_shape, patch_size=args.patch_size, num_blocks=args.steps,
                               num_layers=args.depth or 2, width=args.width, heads=args.heads,
                               num_bits=num_bits, num_classes=num_classes,
                               **{k: v for k, v in given.items() if v is not None}, **policy)
    if args.model == "jet":
        return tfflows.Jet(event_shape, patch_size=args.patch_size, num_couplings=args.steps,
                           depth=args.depth or 1, width=args.width, heads=args.heads,
                           num_bits=num_bits, num_classes=num_classes, seed=args.seed, **policy)
    if args.model == "glow":
        return tfflows.Glow(event_shape, num_levels=args.levels, num_steps=args.steps,
                            hidden_channels=args.width, coupling=args.coupling, num_bits=num_bits,
                            num_classes=num_classes, seed=args.seed, **policy)
    return tfflows.RealNVP(event_shape, num_levels=args.levels, num_blocks=args.blocks,
                           hidden_channels=args.width, num_bits=num_bits, num_classes=num_classes, **policy)


RUN_FILES = ("results.json", "model.keras")
RUN_FOLDERS = ("checkpoints", "backup", "samples", "tensorboard")
"""What ``tfflows train`` writes in ``--out``: all that ``--overwrite`` removes."""


def _previous_run(out: str) -> str | None:
    """``"finished"``, ``"interrupted"`` or ``None``: what an earlier ``train`` left in ``out``."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out!r} is not a folder.")
    found = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    if found:
        return f"a finished run ({', '.join(found)})"
    found = [d + "/" for d in RUN_FOLDERS if os.path.isdir(os.path.join(out, d))
             and os.listdir(os.path.join(out, d))]
    if found:
        return f"an interrupted run ({', '.join(found)}; no results.json)"
    return None


def _remove_run(out: str) -> None:
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


def _check_tarflow_options(args) -> None:
    """Refuses TarFlow's training flags where they would do nothing (before any data is read)."""
    given = [flag for flag, key in (("--noise", "noise"), ("--noise-std", "noise_std"),
                                    ("--label-dropout", "label_dropout"))
             if getattr(args, key, None) is not None]
    if given and args.model != "tarflow":
        raise ValueError(f"{given[0]} is a training option of --model tarflow, got --model {args.model}.")
    if getattr(args, "noise_std", None) is not None and args.noise != "gaussian":
        raise ValueError(f"--noise-std is the std of --noise gaussian, got --noise "
                         f"{args.noise or 'uniform (the default)'}.")
    if getattr(args, "label_dropout", None) is not None and not args.conditional:
        raise ValueError("--label-dropout is for class-conditional models (--conditional), "
                         "got an unconditional one.")


def _train(args) -> dict:
    from tfflows.multiworker_cli import train_worker, wants_workers

    if args.model == "idf":  # the codec's integer flow trains with its own loop (tfflows.codec.train)
        from tfflows.codec.train import train_from_cli

        return train_from_cli(args)
    if wants_workers(args):
        return train_worker(args)
    import keras
    import tensorflow as tf

    import tfflows
    from tfflows.callbacks import (FiniteCheckpoint, ResumableBackup, SampleCheck, SampleGrid,
                                   TensorBoardSamples, TimeLimit)
    from tfflows.clock import TestAt, TrainingClock
    from tfflows.io import atomic_write_json
    from tfflows.training import make_optimizer, probe_jit

    _check_tarflow_options(args)
    previous = _previous_run(args.out)
    if previous and not (args.resume or args.overwrite):
        raise ValueError(f"--out {args.out!r} holds {previous}; pass --resume to continue it "
                         "(up to --epochs in total) or --overwrite to start over, or choose another --out.")
    if args.test_at and args.time_limit and max(args.test_at) > args.time_limit:
        raise ValueError(f"--test-at: expected minutes up to --time-limit {args.time_limit:g}, "
                         f"got {max(args.test_at):g}.")
    if args.n_bits is not None:
        print("tfflows train: --n-bits is deprecated and goes in the next release; use --num-bits",
              file=sys.stderr)
        args.num_bits = args.n_bits
    keras.utils.set_random_seed(args.seed)
    tabular = dict(columns=args.columns, val_fraction=args.val_fraction, seed=args.seed)
    train_x, train_y, num_bits, source_bits = _load_data(
        args.dataset, args.data_dir, "train", args.num_bits, args.max_train, args.conditional, **tabular)
    test_x, test_y, _, _ = _load_data(args.dataset, args.data_dir, "test", args.num_bits,
                                      with_labels=args.conditional, **tabular)
    num_classes = None
    if args.conditional:
        if train_y is None:
            raise SystemExit(f"tfflows train: --conditional needs labelled data; {args.dataset} has none.")
        num_classes = int(max(train_y.max(), test_y.max())) + 1
    train = _dataset(train_x, train_y, num_bits, source_bits, args.batch_size, True, args.seed,
                     drop_remainder=True)
    if getattr(args, "perturb", None):
        train = _perturbed(args, train_x, num_bits, source_bits)
    test = _dataset(test_x, test_y, num_bits, source_bits, 256, False, args.seed + 1)
    val_examples = args.val_examples or (VAL_EXAMPLES_TIMED if args.time_limit else None)
    val = test
    if val_examples and val_examples < len(test_x):
        val = _dataset(test_x[:val_examples], None if test_y is None else test_y[:val_examples],
                       num_bits, source_bits, 256, False, args.seed + 1)
    model = _build_model(args, train_x.shape[1:], num_bits, num_classes)
    pixel_range = _pixel_range(train_x, num_bits, source_bits)
    probe = args.jit == "auto" and _worth_probing(args, len(train_x))
    model.compile(optimizer=make_optimizer(args.lr, args.warmup, clipnorm=args.clipnorm),
                  jit_compile=False if probe else {"auto": "auto", "on": True, "off": False}[args.jit])
    vector = num_bits is None
    if vector:
        # Standardize's statistics come from every training row, not only the first batch
        # (a resumed run gets its own back from the backup, as for ActNorm).
        model.initialize((train_x, train_y) if model.is_conditional else train_x)
    print(f"tfflows: {type(model).__name__} on {args.dataset}: {len(train_x)} train / "
          f"{len(test_x)} test examples of shape {tuple(train_x.shape[1:])}, "
          f"{model.count_params():,} parameters")
    # Only now, with the data and the model ready, is the earlier run given up.
    if previous and args.overwrite:
        _remove_run(args.out)
        print(f"tfflows: --overwrite: removed {previous} from {args.out}")
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoints")
    os.makedirs(ckpt, exist_ok=True)
    backup = ResumableBackup(os.path.join(args.out, "backup"), checkpoint_dir=ckpt)
    checkpoint = FiniteCheckpoint(os.path.join(ckpt, "epoch_{epoch:03d}.keras"))
    grid = SampleGrid(os.path.join(args.out, "samples"), num_bits=num_bits or 8,
                      value_range=pixel_range, seed=args.seed)
    callbacks = [
        SampleCheck(seed=args.seed),  # first, so the others log its fraction too
        checkpoint,
        backup,
        keras.callbacks.TensorBoard(os.path.join(args.out, "tensorboard"), update_freq=args.log_every),
        grid,
        TensorBoardSamples(os.path.join(args.out, "tensorboard"), num_bits=num_bits or 8,
                           value_range=pixel_range, seed=args.seed, source=grid),
    ]
    jit = {"setting": args.jit, "probe": None}
    budget = args.time_limit * 60.0 if args.time_limit else None
    if probe:
        # XLA's compilation may take at most a tenth of a time-limited run.
        jit["probe"] = probe_jit(model, train, max_compile_seconds=budget / 10 if budget else None)
        if jit["probe"]["xla_skipped"]:
            print(f"tfflows: --jit auto: XLA off, not tried: {jit['probe']['xla_skipped']}")
        elif jit["probe"]["xla_error"]:
            print(f"tfflows: --jit auto: XLA off, it could not compile the step: "
                  f"{jit['probe']['xla_error']}")
        else:
            print(f"tfflows: --jit auto: XLA {'on' if model.jit_compile else 'off'} (measured "
                  f"{jit['probe']['seconds_per_step']['off']:.3f} s/step without, "
                  f"{jit['probe']['seconds_per_step']['on']:.3f} s/step with)")
        if budget:  # the probe's steps trained the model: they count against the budget
            budget = max(budget - jit["probe"]["probe_seconds"], 1e-3)
    jit["jit_compile"] = bool(model.jit_compile)
    limit = TimeLimit(budget) if budget else None
    if limit:
        callbacks.append(limit)
    test_at = None
    marks = sorted(m * 60.0 for m in args.test_at or () if not args.time_limit or m < args.time_limit)
    if marks:
        test_at = TestAt(test, marks, time_limit=limit, clock=None)
        callbacks.append(test_at)
    if vector and not args.no_early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=args.patience, restore_best_weights=True,
            verbose=min(args.verbose, 1)))
    clock = TrainingClock()
    if test_at is not None:
        test_at.clock = clock
    callbacks = clock.around(callbacks)
    start = time.time()
    if args.steps_per_epoch:
        train = train.repeat()
    history = model.fit(train, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                        validation_data=val, validation_freq=args.val_every, callbacks=callbacks,
                        verbose=args.verbose)
    seconds = time.time() - start
    if args.resume:
        print(f"tfflows: resumed after {backup.initial_epoch} epochs from {backup.restored_from}"
              if backup.restored_from else f"tfflows: nothing to resume in {args.out}; trained from scratch")
    final = model.evaluate(test, return_dict=True, verbose=0)
    diverged = model.stopped_on_nonfinite
    if not diverged:
        model.save(os.path.join(args.out, "model.keras"))
    epochs_run = len(history.history.get("loss", []))
    fractions = history.history.get(SampleCheck.key, [])
    result = {
        "model": type(model).__name__, "dataset": args.dataset,
        "data_dir": None if args.data_dir is None else os.path.abspath(args.data_dir), "num_bits": num_bits,
        "n_bits": num_bits,  # the old name, read by earlier versions; to go in the next release
        "pixel_range": pixel_range,
        "epochs_run": epochs_run, "epochs_total": backup.initial_epoch + epochs_run,
        "resumed_from": backup.restored_from, "train_seconds": round(seconds, 1),
        "train_steps": int(model.optimizer.iterations.numpy()),
        "time_breakdown_s": {**clock.breakdown(), **({"jit_probe": jit["probe"]["probe_seconds"]}
                                                    if jit["probe"] else {})},
        "jit": jit,
        "test_at": (test_at.results if test_at else []) + (
            [{"minutes": m, "train_seconds": round(seconds - sum(
                r["eval_seconds"] for r in (test_at.results if test_at else [])), 1),
              "train_steps": int(model.optimizer.iterations.numpy()), **final}
             for m in (args.test_at or ()) if args.time_limit and m == args.time_limit][:1]),
        "test_loss_nats": final["loss"], f"test_{model.per_dim_metric}": final[model.per_dim_metric],
        "test_split": ("validation rows of the CSV file (--val-fraction, seeded by --seed)"
                       if args.dataset.lower().endswith(".csv") else "test"),
        "parameters": model.count_params(), "stopped_on_nonfinite": diverged,
        "nonfinite_steps": int(model.nonfinite_steps.numpy()),
        "last_good_checkpoint": checkpoint.last_good,
        "nonfinite_sample_fraction": fractions[-1] if fractions else None,
        "val_loss_per_epoch": history.history.get("val_loss", []),
        "val_examples": min(val_examples or len(test_x), len(test_x)),
        "nonfinite_sample_fraction_per_epoch": fractions,
        "args": vars(args),
    }
    atomic_write_json(os.path.join(args.out, "results.json"), result)
    if diverged:
        where = (f"the last good checkpoint is {checkpoint.last_good}" if checkpoint.last_good
                 else "no checkpoint was written before it")
        raise SystemExit(
            f"tfflows train: training stopped on non-finite values (the loss, a gradient or the "
            f"update was inf or NaN) in epoch {result['epochs_total']}; that step was skipped and "
            f"model.keras was not written; {where}. Lower --lr or raise --warmup. "
            f"Details in {os.path.join(args.out, 'results.json')}.")
    if fractions and fractions[-1] > 0.5:
        print(f"tfflows train: warning: {fractions[-1]:.0%} of samples at temperature 1.0 are inf or "
              "NaN: the model is not usable as trained (lower --lr or raise --warmup; "
              "FlowModel.sample(clip_latent=...) draws finite ones).", file=sys.stderr)
    what = "NLL (nats)" if num_bits is None else "bits/dim"
    value = final["loss"] if num_bits is None else final["bits_per_dim"]
    print(f"tfflows: test {what} {value:.4f} after {result['epochs_total']} epochs "
          f"({epochs_run} in this run, {seconds:.0f} s); model, samples and logs in {args.out}")
    return result


def _pixel_range(images, num_bits, source_bits) -> list[int] | None:
    """The lowest and highest pixel level of ``images`` at ``num_bits`` (None: vector data, or one level).

    Sample pictures draw this range black to white: the 8×8 digits use levels
    0..16 of 32, which would otherwise never be brighter than mid-grey.
    """
    import numpy as np

    if num_bits is None or len(images) == 0:
        return None
    shift = 2 ** (source_bits - num_bits)
    low, high = (int(np.floor(float(v) / shift)) for v in (np.min(images), np.max(images)))
    return [low, high] if low < high else None


def _perturbed(args, train_x, num_bits, source_bits):
    """The training data of a background model (``--perturb``): pixels replaced at that rate."""
    from tfflows.ood import perturbed_dataset

    if num_bits is None or args.conditional:
        raise ValueError(f"--perturb is for unconditional image models, got dataset {args.dataset!r}"
                         + (" with --conditional." if args.conditional else " (vector data)."))
    return perturbed_dataset(train_x, args.perturb, batch_size=args.batch_size, n_bits=num_bits,
                             source_bits=source_bits, seed=args.seed)


def _check_model_file(path: str) -> None:
    """Refuses, before Keras reads it, what cannot be a ``.keras`` file (Keras calls it "File not found")."""
    import zipfile

    if not os.path.exists(path):
        raise SystemExit(f"tfflows: no model file at {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"expected a .keras model file written by tfflows train, got the folder {path!r}.")
    if not path.endswith(".keras"):
        raise ValueError(f"expected a .keras model file written by tfflows train, got {path!r}.")
    broken = f"could not load the model file {path!r}: not a readable .keras model file (truncated or corrupt?)"
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{broken}: expected a zip archive, got {os.path.getsize(path)} bytes that are not one.")
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


def _load_model(path: str):
    import keras

    import tfflows

    tfflows._register_keras_objects()
    _check_model_file(path)
    try:
        model = keras.models.load_model(path)
    except Exception as err:  # a missing class, a damaged weights file, another format …
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"could not load the model file {path!r} (expected a .keras file written "
                         f"by tfflows; got {type(err).__name__}: {first})") from err
    if not isinstance(model, tfflows.models.FlowModel):
        raise ValueError(f"expected a tfflows flow model in {path!r}, got a {type(model).__name__}.")
    return model


def _recorded_source(model_path: str) -> dict:
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
        raise ValueError(f"{path!r} is unreadable (expected the JSON that tfflows train writes, "
                         f"with a 'dataset'; got {type(err).__name__}: {err}); pass --dataset.") from err
    recorded["path"] = path
    return recorded


def _evaluate(args) -> dict:
    from tfflows.io import strict_json

    model = _load_model(args.model_path)
    dataset, data_dir = args.dataset, args.data_dir
    recorded = _recorded_source(args.model_path)
    if dataset is None:
        if not recorded:
            raise ValueError("pass --dataset: there is no results.json beside the model to say "
                             "which data it was trained on.")
        dataset = recorded["dataset"]
    if data_dir is None and dataset == recorded.get("dataset"):
        # an older results.json kept it only among the arguments
        data_dir = recorded.get("data_dir", (recorded.get("args") or {}).get("data_dir"))
    source = f"dataset {dataset!r}" + (f" from {data_dir!r}" if data_dir else "")
    if recorded and args.dataset is None:
        source += f" (as recorded in {recorded['path']})"
    print(f"tfflows evaluate: {args.split} split of {source}", file=sys.stderr)
    num_bits = getattr(model, "num_bits", None)
    # A CSV file is split as it was for training (its recorded columns, fraction and seed).
    trained = (recorded.get("args") or {}) if dataset == recorded.get("dataset") else {}
    x, y, num_bits, source_bits = _load_data(dataset, data_dir, args.split, num_bits,
                                           with_labels=model.is_conditional,
                                           columns=trained.get("columns"),
                                           val_fraction=trained.get("val_fraction", 0.2),
                                           seed=trained.get("seed", 0))
    ds = _dataset(x, y, num_bits, source_bits, args.batch_size, False, args.seed)
    out = model.evaluate(ds, return_dict=True, verbose=0)
    out = strict_json({"dataset": dataset, "data_dir": data_dir, "split": args.split,
                       "examples": len(x), **out})
    print(json.dumps(out, allow_nan=False))
    return out


def _density(path: str, what: str):
    """An OOD density from a .keras file or an exported SavedModel folder."""
    from tfflows.ood import ImageDensity

    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ValueError(f"{what}: expected a .keras file or a SavedModel folder, got the folder "
                             f"{path!r} without saved_model.pb.")
        return ImageDensity.from_saved_model(path)
    return ImageDensity.from_model(_load_model(path), name=os.path.basename(path))


def _score(args) -> dict:
    from tfflows import ood
    from tfflows.io import atomic_write_json, strict_json

    model = _density(args.model_path, "MODEL")
    background = None if args.background is None else _density(args.background, "--background")
    dataset = args.in_dataset
    if dataset is None:
        recorded = _recorded_source(args.model_path) if not os.path.isdir(args.model_path) else {}
        if not recorded:
            raise ValueError("pass --in-dataset: there is no results.json beside the model to say "
                             "which data it was trained on.")
        dataset = recorded["dataset"]
    load = dict(max_examples=args.max_examples, seed=args.seed, data_dir=args.data_dir)
    shape = model.event_shape
    inside = ood.load_ood_images(dataset, shape, split=args.split, **load)
    train = None
    if args.train_examples > 0:
        train = ood.load_ood_images(dataset, shape, split="train", data_dir=args.data_dir,
                                    max_examples=args.train_examples, seed=args.seed)
    outside = {spec: ood.load_ood_images(spec, shape, split=args.split, **{**load, "seed": args.seed + 1 + i})
               for i, spec in enumerate(args.ood_dataset)}
    print(f"tfflows score: {model.name} ({model.num_bits} bits, {list(shape)}) on {len(inside)} "
          f"{args.split} images of {dataset!r}" + (f", background {background.name}" if background else
                                                   ", no --background: no likelihood ratio"),
          file=sys.stderr)
    table = ood.evaluate(model, inside, outside, background=background, train_data=train,
                         batch_size=args.batch_size, typicality_batch=args.typicality_batch)
    table = strict_json({"model": args.model_path, "background": args.background,
                         "in_dataset": dataset, "split": args.split, **table})
    print(ood.format_table(table))
    if args.json_out:
        atomic_write_json(args.json_out, table)
        print(f"tfflows score: table written to {args.json_out}", file=sys.stderr)
    return table


def _sample_options(args, model) -> dict:
    """``--guidance`` and ``--denoise`` as ``model.sample`` options, where the model offers them."""
    options = {}
    if args.guidance is not None:
        options["guidance"] = args.guidance
    if args.denoise:
        options["denoise"] = True
    offered = getattr(model, "sample_signature_options", None)
    name = type(model).__name__
    needs = {"guidance": "class-conditional TarFlow models (trained with --conditional)",
             "denoise": "TarFlow models trained with --noise gaussian"}
    for key in options:
        if key not in (offered or {}):
            what = (f"a {name}" if offered is None else
                    f"an unconditional {name}" if key == "guidance" else
                    f"a {name} trained with noise={getattr(model, 'noise', None)!r}")
            raise ValueError(f"--{key} is for {needs[key]}, got {what} from {args.model_path!r}.")
    return options


def _sample(args) -> None:
    from tfflows.callbacks import save_samples_picture

    model = _load_model(args.model_path)
    options = _sample_options(args, model)
    try:  # the training data's pixel levels, drawn black to white (older runs did not record them)
        pixel_range = _recorded_source(args.model_path).get("pixel_range")
    except ValueError:
        pixel_range = None
    if not (isinstance(pixel_range, list) and len(pixel_range) == 2
            and all(isinstance(v, int) for v in pixel_range)):
        pixel_range = None
    save_samples_picture(model, args.out, args.temperatures, per_row=args.num, seed=args.seed,
                         num_bits=getattr(model, "num_bits", 8),
                         value_range=tuple(pixel_range) if pixel_range else None,
                         sample_options=options)
    print(f"tfflows: samples at temperatures {args.temperatures} written to {args.out}")


def _export(args) -> None:
    from tfflows.export import export_saved_model

    model = _load_model(args.model_path)
    path = export_saved_model(model, os.path.join(args.out_dir, str(args.version)),
                              max_samples=args.max_samples, overwrite=args.overwrite)
    print(f"tfflows: SavedModel written to {path}")


DEBUG_ENV = "TFFLOWS_DEBUG"
"""Set to 1 for the full traceback of any failure instead of its one-line message."""


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit status.

    Expected failures (bad arguments or data, missing or corrupt files,
    unreachable datasets: ``ValueError``, ``OSError``) print one line
    ``tfflows <command>: <message>`` to stderr and return 2; argument errors
    exit 2 through argparse. Anything else is a bug: one line naming the
    error and exit status 1, or the whole traceback with ``TFFLOWS_DEBUG=1``.
    Importing this module, ``--help`` and argument errors import no TensorFlow.
    """
    args = build_parser().parse_args(argv)
    if args.command == "train" and args.steps is None:
        args.steps = DEFAULT_JET_COUPLINGS if args.model == "jet" else DEFAULT_STEPS
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfflows.codec.cli import HANDLERS as codec_handlers

    handlers = {"train": _train, "evaluate": _evaluate, "score": _score, "sample": _sample,
                "export": _export, **codec_handlers}
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        handlers[args.command](args)
    except (ValueError, OSError) as err:
        if debug:
            raise
        print(f"tfflows {args.command}: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tfflows {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: keep the output short, offer the traceback
        if debug:
            raise
        print(f"tfflows {args.command}: internal error: {type(err).__name__}: {_one_line(err)[:500]} "
              f"(rerun with {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
