"""Test NLL on tables that ship with scikit-learn: tfflows against zuko (PyTorch) and BayesFlow (Keras 3).

Datasets: breast cancer (569 × 30), wine (178 × 13) and the 8×8 digits as
64-D vectors (1,797 rows, levels 0..16 plus uniform [0, 1) dequantization
noise drawn once with the split seed). Each is cut once, seeded, into 70 %
train, 10 % validation and 20 % test; every system reads the same split
file. Models standardise with the training rows' mean and scale as part of
the flow (tfflows: the Standardize step; zuko: the same affine map with its
−Σ log scale added), so every NLL is in the data's own units. Training: Adam,
batch 64, early stopping on the validation NLL (patience 20, best weights
restored). A full-covariance Gaussian fitted on the training rows is the
baseline. tfflows' models take the library's defaults for the table's size
(``vector_defaults``: conditioner width and dropout); BayesFlow 2.1's
``CouplingFlow`` its own defaults (depth 6, 128×128 subnets, dropout 0.05),
affine and spline, trained by the same loop as zuko (it needs Python >= 3.12:
``--bayesflow-python``).

Each system runs in its own process:

    python bench/tabular.py --bayesflow-python PY # splits, then every system, then the table
    python bench/tabular.py --system tfflows --splits S.npz --out R.json   # one system
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

DATASETS = ("breast_cancer", "wine", "digits")
LOG_2PI = math.log(2.0 * math.pi)


def make_splits(path: str, seed: int = 0) -> None:
    from sklearn import datasets

    arrays = {}
    rng = np.random.default_rng(seed)
    for name in DATASETS:
        x = getattr(datasets, f"load_{name}")().data.astype(np.float64)
        if name == "digits":
            x = x + rng.uniform(0.0, 1.0, x.shape)  # dequantize the 17 levels
        order = rng.permutation(len(x))
        n_test, n_val = round(0.2 * len(x)), round(0.1 * len(x))
        arrays[f"{name}/test"] = x[order[:n_test]]
        arrays[f"{name}/val"] = x[order[n_test : n_test + n_val]]
        arrays[f"{name}/train"] = x[order[n_test + n_val :]]
    np.savez(path, **arrays)


def gaussian_nll(train: np.ndarray, test: np.ndarray) -> float:
    """Mean test NLL of the maximum-likelihood full-covariance Gaussian (tiny ridge)."""
    mean = train.mean(0)
    cov = np.cov(train, rowvar=False, bias=True) + 1e-6 * np.eye(train.shape[1])
    _sign, logdet = np.linalg.slogdet(cov)
    diff = test - mean
    maha = np.einsum("nd,dk,nk->n", diff, np.linalg.inv(cov), diff)
    return float(np.mean(0.5 * (maha + logdet + train.shape[1] * LOG_2PI)))


def early_stopping(
    args, run_epoch, val_nll, get_state, set_state, test_nll=None, curve=None
) -> tuple[float, int, float]:
    """The peers' training loop: ``run_epoch()`` until the validation NLL has not improved for
    ``args.patience`` epochs (at most ``args.epochs``), then the best epoch's state put back, as
    Keras's EarlyStopping(restore_best_weights=True) does for tfflows.

    With ``test_nll`` and a list ``curve``, each epoch appends ``[seconds, test NLL]``: the time
    spent training so far, without the time of these test evaluations (see :func:`curve_callback`).

    Returns:
      (best validation NLL, epochs run, seconds).
    """
    best, best_state, wait, epochs = math.inf, None, 0, 0
    start = time.time()
    aside = 0.0  # seconds spent on the curve's test evaluations, not on training
    for epoch in range(args.epochs):
        run_epoch()
        epochs = epoch + 1
        v = val_nll()
        if curve is not None and test_nll is not None:
            paused = time.time()
            curve.append([round(paused - start - aside, 3), test_nll()])
            aside += time.time() - paused
        if v < best:
            best, best_state, wait = v, get_state(), 0
        else:
            wait += 1
            if wait >= args.patience:
                break
    seconds = time.time() - start - aside
    set_state(best_state)
    return best, epochs, seconds


def seconds_to(curve: list, target: float) -> float | None:
    """The training time at the end of the first epoch whose test NLL is at or below ``target``."""
    return next((t for t, nll in curve if nll <= target), None)


def report(rows: list[dict], **row: object) -> None:
    """Adds one result row and prints it as a JSON line (the driver's child reports as it goes)."""
    rows.append(row)
    print(json.dumps(row), flush=True)


def standardized(splits, name: str) -> tuple[tuple[np.ndarray, ...], float]:
    """Train, validation and test rows of ``name`` standardized (float32) with the training rows'
    mean and scale, and the log-det of that map, which turns the peers' NLLs back into data units
    (tfflows' models standardize inside the flow, with the Standardize step)."""
    train, val, test = (splits[f"{name}/{p}"] for p in ("train", "val", "test"))
    mean, scale = train.mean(0), train.std(0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    parts = tuple(((a - mean) / scale).astype("float32") for a in (train, val, test))
    return parts, -float(np.log(scale).sum())


# -- tfflows -------------------------------------------------------------------------------------


def curve_callback(model, test: np.ndarray):
    """A Keras callback: each epoch's ``[seconds, test NLL]`` into ``.points``, as ``early_stopping``
    records the peers' (``.start`` is set when ``fit`` starts; ``.aside`` is the time of its own
    test evaluations, which the caller takes off the run's seconds)."""
    import keras

    class _Curve(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.points: list = []
            self.start = time.time()
            self.aside = 0.0

        def on_epoch_end(self, epoch, logs=None) -> None:
            paused = time.time()
            nll = float(-np.mean(model.log_prob(test).numpy()))
            self.points.append([round(paused - self.start - self.aside, 3), nll])
            self.aside += time.time() - paused

    return _Curve()


def run_tfflows(splits, args) -> list[dict]:
    import keras

    import tfflows
    from tfflows.models.vector import vector_defaults

    rows = []
    spline = {"num_bins": 8, "bound": 5.0}
    for name in args.datasets:
        train, val, test = (splits[f"{name}/{p}"].astype("float32") for p in ("train", "val", "test"))
        dim = train.shape[1]
        rows.append(
            {
                "system": "numpy",
                "model": "Gaussian (full covariance)",
                "dataset": name,
                "dim": dim,
                "test_nll": gaussian_nll(train.astype(np.float64), test.astype(np.float64)),
                "seconds": 0.0,
                "epochs": 0,
            }
        )
        # The library's defaults for a table of this size (tfflows.models.vector.vector_defaults):
        # the conditioners' width and dropout; each model's own number of steps.
        sizes = vector_defaults(len(train), dim)
        if args.dropout is not None:  # to compare rates (BENCHMARKS.md: tiny tables)
            sizes["dropout"] = args.dropout
        makers = {
            "VectorRealNVP": lambda dim=dim, s=sizes: tfflows.VectorRealNVP(dim, standardize=True, **s),
            "VectorNSF": lambda dim=dim, s=sizes: tfflows.VectorNSF(dim, standardize=True, **spline, **s),
            "VectorMAF": lambda dim=dim, s=sizes: tfflows.VectorMAF(dim, standardize=True, **s),
            "VectorMAF (spline)": lambda dim=dim, s=sizes: tfflows.VectorMAF(
                dim, transform="spline", standardize=True, **spline, **s
            ),
        }
        for model_name in args.models:
            keras.utils.set_random_seed(args.seed)
            model = makers[model_name]()
            model.initialize(train)  # Standardize: mean and scale of every training row
            model.compile(optimizer=keras.optimizers.Adam(args.lr, clipnorm=10.0))
            stop = keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=args.patience, restore_best_weights=True
            )
            curve = curve_callback(model, test)
            start = curve.start = time.time()
            history = model.fit(
                train,
                batch_size=args.batch_size,
                epochs=args.epochs,
                validation_data=(val,),
                callbacks=[curve, stop],  # the curve first: it sees each epoch's own weights
                verbose=0,
            )
            seconds = time.time() - start - curve.aside
            test_nll = float(-np.mean(model.log_prob(test).numpy()))
            rows.append(
                {
                    "system": "tfflows",
                    "model": model_name,
                    "dataset": name,
                    "dim": dim,
                    "test_nll": test_nll,
                    "val_nll": float(min(history.history["val_loss"])),
                    "seconds": round(seconds, 1),
                    "epochs": len(history.history["loss"]),
                    "curve": curve.points,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


# -- zuko ----------------------------------------------------------------------------------------


def run_zuko(splits, args) -> list[dict]:
    import copy

    import torch
    import zuko

    rows = []
    for name in args.datasets:
        parts, log_det = standardized(splits, name)
        xt, xv, xs = (torch.tensor(a) for a in parts)
        dim = xt.shape[1]
        makers = {
            "zuko.MAF": lambda dim=dim: zuko.flows.MAF(dim, transforms=5, hidden_features=(64, 64)),
            "zuko.NSF": lambda dim=dim: zuko.flows.NSF(dim, transforms=5, hidden_features=(64, 64), bins=8),
        }
        for model_name in args.zuko_models:
            torch.manual_seed(args.seed)
            flow = makers[model_name]()
            opt = torch.optim.Adam(flow.parameters(), lr=args.lr)
            gen = torch.Generator().manual_seed(args.seed)

            def run_epoch(flow=flow, opt=opt, gen=gen, xt=xt):
                flow.train()
                for idx in torch.randperm(len(xt), generator=gen).split(args.batch_size):
                    loss = -flow().log_prob(xt[idx]).mean()
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
                    opt.step()

            def nll(x, flow=flow, log_det=log_det):
                flow.eval()
                with torch.no_grad():
                    return float(-flow().log_prob(x).mean()) - log_det

            curve: list = []
            best, epochs, seconds = early_stopping(
                args,
                run_epoch,
                lambda nll=nll, xv=xv: nll(xv),
                lambda flow=flow: copy.deepcopy(flow.state_dict()),
                flow.load_state_dict,
                lambda nll=nll, xs=xs: nll(xs),
                curve,
            )
            test_nll = nll(xs)
            report(
                rows,
                system=f"zuko {zuko.__version__} / torch {torch.__version__}",
                model=model_name,
                dataset=name,
                dim=dim,
                test_nll=test_nll,
                val_nll=best,
                seconds=round(seconds, 1),
                epochs=epochs,
                curve=curve,
            )
    return rows


# -- BayesFlow (Keras 3 on TensorFlow; 2.1 needs Python >= 3.12, so it runs in its own interpreter) --


def run_bayesflow(splits, args) -> list[dict]:
    import bayesflow as bf
    import keras
    import tensorflow as tf

    rows = []
    for name in args.datasets:
        (xt, xv, xs), log_det = standardized(splits, name)
        dim = xt.shape[1]
        for transform in args.bayesflow_transforms:
            keras.utils.set_random_seed(args.seed)
            flow = bf.networks.CouplingFlow(transform=transform)  # its defaults otherwise
            flow.build((None, dim))
            optimizer = keras.optimizers.Adam(args.lr, clipnorm=10.0)

            @tf.function
            def step(batch, flow=flow, optimizer=optimizer):
                with tf.GradientTape() as tape:
                    loss = flow.compute_metrics(batch, stage="training")["loss"]
                variables = flow.trainable_variables
                optimizer.apply(tape.gradient(loss, variables), variables)
                return loss

            @tf.function
            def nll(x, flow=flow):
                return -tf.reduce_mean(flow.log_prob(x, training=False))

            rng = np.random.default_rng(args.seed)

            def run_epoch(step=step, rng=rng, xt=xt):
                order = rng.permutation(len(xt))
                for i in range(0, len(xt), args.batch_size):
                    step(tf.constant(xt[order[i : i + args.batch_size]]))

            def val_nll(nll=nll, xv=xv, log_det=log_det):
                return float(nll(tf.constant(xv))) - log_det

            curve: list = []
            best, epochs, seconds = early_stopping(
                args,
                run_epoch,
                val_nll,
                lambda flow=flow: [w.copy() for w in flow.get_weights()],
                flow.set_weights,
                lambda nll=nll, xs=xs, log_det=log_det: float(nll(tf.constant(xs))) - log_det,
                curve,
            )
            test_nll = float(nll(tf.constant(xs))) - log_det
            report(
                rows,
                system=f"BayesFlow {bf.__version__} / Keras {keras.__version__}",
                model=f"CouplingFlow ({transform})",
                dataset=name,
                dim=dim,
                test_nll=test_nll,
                val_nll=best,
                seconds=round(seconds, 1),
                epochs=epochs,
                curve=curve,
            )
    return rows


# -- driver --------------------------------------------------------------------------------------


def table(rows: list[dict]) -> str:
    lines = [
        "| dataset (D) | system | model | test NLL (nats) | nats/dim | epochs | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in DATASETS:
        for r in (r for r in rows if r["dataset"] == name):
            lines.append(
                f"| {name} ({r['dim']}) | {r['system']} | {r['model']} | {r['test_nll']:.2f} | "
                f"{r['test_nll'] / r['dim']:.3f} | {r['epochs']} | {r['seconds']:.0f} |"
            )
    return "\n".join(lines)


def verdict(rows: list[dict]) -> str:
    out = []
    for name in DATASETS:
        mine = [r for r in rows if r["dataset"] == name and r["system"] == "tfflows"]
        peer = [r for r in rows if r["dataset"] == name and r["system"].startswith("zuko")]
        gauss = [r for r in rows if r["dataset"] == name and r["system"] == "numpy"]
        if not (mine and peer and gauss):
            continue
        best = min(mine, key=lambda r: r["test_nll"])
        peer_best = min(peer, key=lambda r: r["test_nll"])
        gap = (best["test_nll"] - peer_best["test_nll"]) / best["dim"]
        out.append(
            f"- {name}: tfflows best {best['model']} {best['test_nll']:.2f} vs peer best "
            f"{peer_best['model']} {peer_best['test_nll']:.2f} ({gap:+.3f} nats/dim; target ≤ +0.1), "
            f"Gaussian {gauss[0]['test_nll']:.2f} "
            f"({'ahead' if best['test_nll'] < gauss[0]['test_nll'] else 'NOT ahead'})."
        )
    return "\n".join(out)


def time_to_quality(rows: list[dict]) -> str:
    """Each tfflows model's training time to reach each peer model's final test NLL, beside the
    peer's own (both from the per-epoch curves; "never" when the run ended above it)."""
    out = []
    for name in DATASETS:
        mine = [r for r in rows if r["dataset"] == name and r["system"] == "tfflows" and r.get("curve")]
        for peer in (r for r in rows if r["dataset"] == name and r["system"] not in ("tfflows", "numpy")):
            if not peer.get("curve"):
                continue
            target = peer["test_nll"]
            theirs = seconds_to(peer["curve"], target)
            parts = []
            for r in mine:
                t = seconds_to(r["curve"], target)
                parts.append(
                    f"{r['model']} {'never' if t is None else f'{t:.1f} s ({t / theirs:.2f}x)'}"
                    if theirs
                    else f"{r['model']} {'never' if t is None else f'{t:.1f} s'}"
                )
            out.append(
                f"- {name}: to {peer['model']}'s test NLL {target:.2f} ({peer['system'].split(' /')[0]} "
                f"{theirs:.1f} s of its {peer['seconds']:.1f} s): " + "; ".join(parts)
            )
    return "\n".join(out)


def print_report(rows: list[dict]) -> None:
    print(table(rows))
    print(verdict(rows))
    print(time_to_quality(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--system",
        choices=("tfflows", "zuko", "bayesflow"),
        default=None,
        help="run one system (default: splits, every system in turn, table)",
    )
    parser.add_argument(
        "--bayesflow-python",
        default=os.environ.get("BAYESFLOW_PYTHON"),
        help="a Python >= 3.12 with bayesflow 2.1 (default: $BAYESFLOW_PYTHON; unset: no BayesFlow rows)",
    )
    parser.add_argument("--bayesflow-transforms", nargs="+", default=["affine", "spline"])
    parser.add_argument("--splits", default="bench/tabular_splits.npz")
    parser.add_argument("--out", default="bench/tabular_results.json")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument(
        "--models", nargs="+", default=["VectorRealNVP", "VectorNSF", "VectorMAF", "VectorMAF (spline)"]
    )
    parser.add_argument("--zuko-models", nargs="+", default=["zuko.MAF", "zuko.NSF"])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", type=float, help="tfflows: this dropout instead of vector_defaults'")
    parser.add_argument(
        "--report", nargs="+", metavar="R.json", help="print the table of earlier --out files and stop"
    )
    args = parser.parse_args()
    if args.report:
        rows = []
        for path in args.report:
            with open(path, encoding="utf-8") as f:
                rows += json.load(f)
        print_report(rows)
        return
    if args.system is None:
        make_splits(args.splits, args.seed)
        rows = []
        systems = {"tfflows": sys.executable, "zuko": sys.executable}
        if args.bayesflow_python:
            systems["bayesflow"] = args.bayesflow_python
        else:
            print("no --bayesflow-python (or $BAYESFLOW_PYTHON): BayesFlow is left out", flush=True)
        for system, python in systems.items():
            out = args.out.replace(".json", f"_{system}.json")
            cmd = [
                python,
                __file__,
                "--system",
                system,
                "--splits",
                args.splits,
                "--out",
                out,
                "--epochs",
                str(args.epochs),
                "--patience",
                str(args.patience),
                "--batch-size",
                str(args.batch_size),
                "--lr",
                str(args.lr),
                "--seed",
                str(args.seed),
                "--datasets",
                *args.datasets,
                "--models",
                *args.models,
                "--zuko-models",
                *args.zuko_models,
                "--bayesflow-transforms",
                *args.bayesflow_transforms,
            ]
            subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
            with open(out, encoding="utf-8") as f:
                rows += json.load(f)
        print_report(rows)
        return
    splits = dict(np.load(args.splits))
    run = {"tfflows": run_tfflows, "zuko": run_zuko, "bayesflow": run_bayesflow}[args.system]
    rows = run(splits, args)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
