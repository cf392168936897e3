"""The ``tfflows`` command line's arguments: one parser, every subcommand's flags."""

from __future__ import annotations

import argparse
import math

from tfflows.models.registry import model_names

__all__ = [
    "DEFAULT_JET_COUPLINGS",
    "DEFAULT_STEPS",
    "IMAGE_DATASETS",
    "PROBE_MIN_MINUTES",
    "PROBE_MIN_STEPS",
    "TOY_DATASETS",
    "VAL_EXAMPLES_TIMED",
    "build_parser",
]

IMAGE_DATASETS = ("digits", "fashion_mnist", "mnist")
DEFAULT_STEPS = 4
DEFAULT_JET_COUPLINGS = 16
"""Jet's couplings each stretch a value at most 2×, and a value moves in half of them: 4
couplings could not take 8-bit data below about 7.3 bits/dim, 16 below about 1.3."""
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


def _feature_pair(text: str) -> tuple[int, int]:
    try:
        first, second = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two feature indices as I,J, got {text!r}") from None
    if first < 0 or second < 0 or first == second:
        raise argparse.ArgumentTypeError(f"expected two different indices >= 0, got {text!r}")
    return first, second


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
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
    """The ``tfflows`` argument parser with its subcommands (it imports no TensorFlow)."""
    parser = argparse.ArgumentParser(prog="tfflows", description="Normalizing flows for TensorFlow.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser(
        "train",
        help="train a flow (default: a small Glow on the embedded digits)",
        description="Train a flow. An --out that holds an earlier run, finished or interrupted, "
        "is never retrained silently: the command stops unless --resume or "
        "--overwrite says what to do with it.",
    )
    train.add_argument(
        "--model",
        choices=model_names(),
        default="glow",
        help="tarflow (transformer autoregressive flow over patches) and jet "
        "(couplings with ViT conditioners over patches) are for images; "
        "nsf (neural spline flow), maf (masked autoregressive flow) and "
        "maf-spline (autoregressive neural spline flow: a MAF with 8-bin "
        "rational-quadratic splines on [-5, 5]) are for vector data: the 2-D "
        "toys and CSV files",
    )
    train.add_argument(
        "--dataset",
        default="digits",
        help=f"image data {IMAGE_DATASETS} or any TFDS name, a 2-D toy {TOY_DATASETS}, "
        "or a CSV file (FILE.csv: a header row, then numeric values)",
    )
    tabular = train.add_argument_group("vector data (toys and CSV files)")
    tabular.add_argument(
        "--columns", default=None, help="CSV columns to model, comma-separated (default: all)"
    )
    tabular.add_argument(
        "--val-fraction",
        type=_fraction,
        default=0.2,
        help="CSV rows held out (seeded by --seed) for validation and early stopping",
    )
    tabular.add_argument(
        "--plot-dims",
        type=_feature_pair,
        default=None,
        help="the two features (0-based, as I,J) the density picture of samples shows, standardized; "
        "default 0,1",
    )
    tabular.add_argument(
        "--test-fraction",
        type=_fraction,
        default=0.2,
        help="CSV rows held out (seeded by --seed) for the reported test figure, apart from the "
        "validation rows",
    )
    tabular.add_argument(
        "--patience",
        type=_positive_int,
        default=10,
        help="early stopping: epochs without a better validation loss",
    )
    tabular.add_argument(
        "--no-early-stopping",
        action="store_true",
        help="train all --epochs (default for vector data: stop early on the "
        "validation loss and restore the best weights)",
    )
    tabular.add_argument(
        "--dropout",
        type=_dropout,
        default=None,
        metavar="P",
        help="dropout rate in the conditioners while training (default: chosen from the table's size)",
    )
    tabular.add_argument(
        "--weight-decay", type=_positive_float, default=None, help="Adam's decoupled weight decay"
    )
    tabular.add_argument(
        "--no-standardize",
        action="store_true",
        help="leave out the Standardize step (mean and scale fitted on the training data) of vector models",
    )
    train.add_argument("--data-dir", default=None, help="folder with local IDX files")
    train.add_argument(
        "--levels", type=_positive_int, default=2, help="num_levels: the scales of Glow and RealNVP"
    )
    train.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="num_steps, the flow's depth: steps per level of glow, blocks of tarflow, couplings of jet and "
        f"of vector models (default {DEFAULT_STEPS} for glow and tarflow, {DEFAULT_JET_COUPLINGS} for jet, "
        "8 for vector models; realnvp's couplings per scale are fixed)",
    )
    train.add_argument(
        "--width",
        type=_positive_int,
        default=None,
        help="width of the conditioner networks (channels, units or transformer width; default 64, "
        "for vector data chosen from the table's size)",
    )
    train.add_argument(
        "--depth",
        type=_positive_int,
        default=None,
        help="depth of the conditioner networks: residual blocks of realnvp (default 2), transformer "
        "blocks per tarflow block (2) or per jet ViT (1), hidden layers of vector models (2)",
    )
    transformers = train.add_argument_group("transformer flows (tarflow, jet)")
    transformers.add_argument(
        "--patch-size",
        type=_positive_int,
        default=None,
        help="side of a patch (a token); must divide the image size (default 4)",
    )
    transformers.add_argument(
        "--heads", type=_positive_int, default=None, help="attention heads; must divide --width (default 4)"
    )
    transformers.add_argument(
        "--noise",
        choices=("uniform", "gaussian"),
        default=None,
        help="tarflow's training noise: uniform (default: the uniformly dequantized data, exact bits/dim) "
        "or gaussian (N(0, s^2) added to every batch, the paper's recipe for samples; sample with --denoise)",
    )
    transformers.add_argument(
        "--noise-std",
        type=_positive_float,
        default=None,
        metavar="S",
        help="s of --noise gaussian on the data scaled to [-1, 1] (default 0.05, the paper's)",
    )
    transformers.add_argument(
        "--label-dropout",
        type=_dropout,
        default=None,
        metavar="P",
        help="tarflow with --conditional: each label is replaced by the null "
        "class with probability P (default 0.1), which sampling with "
        "--guidance needs",
    )
    train.add_argument(
        "--blocks", type=_positive_int, default=None, help="deprecated old name of --depth for realnvp"
    )
    train.add_argument(
        "--coupling",
        default="affine",
        help="the coupling transform of glow (images and vectors): affine, additive, "
        "spline, or a name added with tfflows.bijectors.register_transform",
    )
    train.add_argument("--conditional", action="store_true", help="class-conditional model")
    train.add_argument("--epochs", type=_positive_int, default=20)
    train.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="examples per batch (default: 64 for images; for vector data chosen from the number of "
        "training rows, 16 to 64)",
    )
    train.add_argument("--lr", type=_positive_float, default=1e-3)
    train.add_argument(
        "--warmup",
        type=_count,
        default=None,
        help="learning-rate warmup steps (default: a tenth of the run's planned steps, at most 200)",
    )
    train.add_argument("--clipnorm", type=_positive_float, default=50.0)
    bits = train.add_mutually_exclusive_group()
    bits.add_argument(
        "--num-bits",
        type=_positive_int,
        default=None,
        help="bits per pixel (default: the dataset's own, 5 for digits)",
    )
    bits.add_argument(
        "--n-bits", dest="n_bits", type=_positive_int, default=None, help="deprecated name of --num-bits"
    )
    train.add_argument("--max-train", type=_positive_int, default=None, help="use only this many examples")
    train.add_argument(
        "--time-limit",
        type=_positive_float,
        default=None,
        help="stop training after this many minutes (checked every batch)",
    )
    train.add_argument(
        "--test-at",
        type=_positive_float,
        nargs="+",
        default=None,
        metavar="MINUTES",
        help="also evaluate on the whole test split after these many minutes of "
        "training, with the clock (and --time-limit) paused meanwhile; "
        "results.json's test_at lists them",
    )
    train.add_argument(
        "--val-every", type=_positive_int, default=1, help="evaluate on the test split every this many epochs"
    )
    train.add_argument(
        "--val-examples",
        type=_positive_int,
        default=None,
        metavar="N",
        help="validate after each epoch on the first N test examples (default: "
        f"all; with --time-limit {VAL_EXAMPLES_TIMED}); the final test figure "
        "is always over the whole test split",
    )
    train.add_argument(
        "--steps-per-epoch",
        type=_positive_int,
        default=None,
        help="batches per epoch (the data repeat); default: one pass",
    )
    train.add_argument(
        "--log-every",
        type=_positive_int,
        default=10,
        metavar="N",
        help="write the loss and bits/dim to TensorBoard every N batches (sample "
        "grids go there once per epoch)",
    )
    train.add_argument(
        "--backprop",
        choices=("store", "recompute", "reversible"),
        default="store",
        help="store keeps every step's activations for the gradient; recompute keeps "
        "each step's input and reruns it; reversible keeps only the output of "
        "each run of steps and inverts it (memory that does not grow with depth; "
        "not for tarflow or maf, whose inverse is sequential)",
    )
    train.add_argument(
        "--dtype",
        choices=("float32", "float64", "mixed_bfloat16", "mixed_float16"),
        default="float32",
        help="the model's Keras dtype policy: mixed_* run only the conditioner networks "
        "in 16 bits (the flow, log-dets and loss stay float32); mixed_float16 "
        "trains with a LossScaleOptimizer",
    )
    train.add_argument(
        "--jit",
        choices=("auto", "on", "off"),
        default="auto",
        help="XLA for the train step (auto: time a few training steps with and "
        "without XLA on this machine and keep the faster, when the run is "
        f"planned for at least {PROBE_MIN_STEPS} steps and, with --time-limit, "
        f"{PROBE_MIN_MINUTES:g} minutes; "
        "shorter runs: Keras' choice, XLA on a GPU, off on a CPU)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--perturb",
        type=_rate,
        default=None,
        metavar="RATE",
        help="train a background model for the likelihood-ratio OOD score: each "
        "training pixel is replaced by a random value with this probability "
        "(Ren et al. 2019 use 0.1-0.3)",
    )
    train.add_argument(
        "--out",
        default="runs/glow_digits",
        help="output folder: model.keras, results.json, checkpoints/, backup/, samples/, tensorboard/",
    )
    rerun = train.add_mutually_exclusive_group()
    rerun.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (interrupted or finished) from its backup, "
        "else from its newest checkpoint that loads, up to --epochs in total",
    )
    rerun.add_argument(
        "--overwrite",
        action="store_true",
        help="start over: first remove the files an earlier run wrote in --out (only those listed above)",
    )
    train.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=(0, 1, 2),
        help="0: quiet; 1: one line per epoch, and on a terminal a live line with "
        "the epoch's time left; 2: one line per epoch",
    )
    train.add_argument(
        "--keep-checkpoints",
        type=_positive_int,
        default=3,
        metavar="N",
        help="keep the newest N checkpoints/epoch_XXX.keras and the best (lowest val_loss)",
    )
    train.add_argument(
        "--extras-share",
        type=_rate,
        default=0.1,
        metavar="FRACTION",
        help="the largest share of the wall time that the per-epoch extras (sample "
        "grids, the sample check, checkpoints, the backup) may take: each runs "
        "again once the time since it last ran is (1 - FRACTION) / FRACTION "
        "times what it cost then; the last epoch's always run; 1: every epoch",
    )
    cluster = train.add_argument_group(
        "multi-worker training (tfflows.distributed; also started by a TF_CONFIG variable)"
    )
    cluster.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="workers in the cluster; this process is one of them",
    )
    cluster.add_argument("--worker-index", type=int, default=None, help="this worker's place, 0 = chief")
    cluster.add_argument(
        "--worker-hosts",
        default=None,
        metavar="HOST:PORT,...",
        help="every worker's address, in index order (else read from TF_CONFIG)",
    )
    cluster.add_argument(
        "--join-timeout",
        type=_positive_float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for every worker to start",
    )
    cluster.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=100,
        metavar="STEPS",
        help="the chief writes checkpoints/step_* this often (and every epoch)",
    )

    evaluate = sub.add_parser("evaluate", help="test bits/dim (or NLL) of a saved model")
    evaluate.add_argument("model_path", help="a .keras file written by tfflows train")
    evaluate.add_argument("--dataset", default=None, help="default: the one it was trained on")
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256)
    evaluate.add_argument("--seed", type=int, default=0)

    score = sub.add_parser(
        "score",
        help="out-of-distribution scores: AUROC/AUPR/FPR95 of every method",
        description="Scores the in-distribution test set and each OOD set with every OOD method "
        "of tfflows.ood and prints AUROC, AUPR and FPR at 95%% TPR (OOD = positive). "
        "Datasets: a name load_images knows (digits, fashion_mnist, mnist, ...), "
        "NAME:class=K, NAME:without=K, or the synthetic noise and constant; other "
        "image sizes are resized and pixels rescaled to 0..255.",
    )
    score.add_argument(
        "model_path", help="a .keras file written by tfflows train, or an exported SavedModel folder"
    )
    score.add_argument("--in-dataset", default=None, help="default: the one it was trained on")
    score.add_argument("--ood-dataset", nargs="+", required=True, metavar="DATASET")
    score.add_argument(
        "--background",
        default=None,
        metavar="MODEL",
        help="a background model (tfflows train --perturb) for the likelihood ratio",
    )
    score.add_argument("--data-dir", default=None)
    score.add_argument("--split", default="test")
    score.add_argument(
        "--max-examples",
        type=_positive_int,
        default=None,
        help="at most this many images per set (synthetic sets: 1000 by default)",
    )
    score.add_argument(
        "--train-examples",
        type=_count,
        default=1000,
        help="training images whose mean NLL centres the typicality score (0: no typicality)",
    )
    score.add_argument(
        "--typicality-batch",
        type=_positive_int,
        default=10,
        metavar="M",
        help="also run the typicality test on batches of M images (threshold by "
        "bootstrap at 1%% false positives); needs --train-examples",
    )
    score.add_argument("--batch-size", type=_positive_int, default=256)
    score.add_argument("--seed", type=int, default=0)
    score.add_argument("--json-out", default=None, help="also write the table as JSON here")

    sample = sub.add_parser("sample", help="draw samples from a saved model into a PNG")
    sample.add_argument("model_path")
    sample.add_argument("--out", default="samples.png")
    sample.add_argument("--num", type=_positive_int, default=10, help="samples per temperature")
    sample.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 0.7, 0.85, 1.0])
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--guidance",
        type=_finite,
        default=None,
        metavar="W",
        help="class-conditional tarflow: classifier-free guidance weight W (0: none)",
    )
    sample.add_argument(
        "--denoise",
        action="store_true",
        help="tarflow trained with --noise gaussian: one score step x + s^2 grad log p(x) after sampling",
    )

    from tfflows.codec.cli import add_parsers as add_codec_parsers  # compress, decompress

    add_codec_parsers(sub)
    export = sub.add_parser("export", help="export a saved model as a TF Serving SavedModel")
    export.add_argument("model_path")
    export.add_argument("out_dir", help="the SavedModel base folder; a version folder goes inside")
    export.add_argument("--version", type=_positive_int, default=1)
    export.add_argument(
        "--max-samples",
        type=_positive_int,
        default=4096,
        help="the largest num_samples a sample request may ask for",
    )
    export.add_argument(
        "--overwrite", action="store_true", help="replace an existing SavedModel in that version folder"
    )
    return parser
