"""Test bits/dim after the same CPU wall-clock budget: ``tfflows train`` against PyTorch normflows.

The same Glow size on Fashion-MNIST (28×28×1, 8 bits): L = 2 levels, K = 4
steps per level, 128 hidden channels, affine couplings, LU 1×1 convolutions,
ActNorm. Each system trains in its own process (never two at once), for the
same wall-clock budget, and is scored on the **whole** Fashion-MNIST test
split (10,000 images) with uniform dequantization: test bits/dim =
NLL / (784 · ln 2) of x = k + u, u ~ U[0, 1), for pixel levels k in 0..255
(normflows models (k + u) / 256, hence its + 8 bits, as its own example
computes them).

- **tfflows**: ``tfflows train --model glow --dataset fashion_mnist --levels 2
  --steps 4 --width 128`` with the defaults a user gets (batch 64, Adam 1e-3
  with 200 warmup steps, gradient norm clipped at 50, validation after every
  epoch, sample grids, checkpoints, ``--jit auto``), plus ``--time-limit``
  (the budget) and ``--test-at`` for the earlier marks; ``--epochs`` is set
  high enough not to end the run first. The figure at the last mark is the
  test bits/dim ``tfflows train`` prints at the end.
- **normflows**: its Glow recipe (``examples/glow_colab.ipynb``) at the same
  size: ``nf.flows.GlowBlock(channels, 128, split_mode="channel",
  scale=True)`` × K per level, ``nf.flows.Squeeze``, ``nf.flows.Merge``, an
  ``nf.MultiscaleFlow`` with a learned per-channel Gaussian per latent
  (``nf.distributions.GlowBase``, the unconditional form of the recipe's
  ``ClassCondDiagGaussian``), batch 128, ``torch.optim.Adamax(lr=1e-3,
  weight_decay=1e-5)``, steps with a non-finite loss skipped; data
  ``(k + u) / 256`` as its ``Scale(255/256)`` and ``Jitter(1/256)`` give; its
  own loop, no validation.

``--report-at 10 30`` evaluates each system after 10 and after 30 minutes of
training in one run (the training clock pauses during each evaluation);
``--minutes M`` is ``--report-at M``. ``--cores 1`` pins each process to
those cores (``taskset``) with as many TensorFlow / PyTorch threads.

Install (for the benchmark only; tfflows does not depend on either)::

    pip install torch --index-url https://download.pytorch.org/whl/cpu   # CPU build (PyPI's is large)
    pip install normflows                                                # 1.7.3 was used

Usage::

    python bench/time_to_bpd.py --report-at 10 30 --cores 1 --json-out time_to_bpd.json
    python bench/time_to_bpd.py --minutes 1 --cores 0                    # a quick check
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import time

from machine import cpu_name  # bench/machine.py (this folder is on sys.path when run)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

__all__ = ["main"]

LEVELS, STEPS, WIDTH = 2, 4, 128
SYSTEMS = ("tfflows", "normflows")
IDX_DIRS = ("/usr/share/datasets/fashion-mnist",)  # where tfflows.data also looks (Debian package)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    p.add_argument("--minutes", type=float, default=10.0, help="the budget (without --report-at)")
    p.add_argument(
        "--report-at",
        type=float,
        nargs="+",
        default=None,
        metavar="MINUTES",
        help="evaluate at these minutes of training; the budget is the largest",
    )
    p.add_argument("--rounds", type=int, default=1, help="runs per system, alternating A B A B")
    p.add_argument("--cores", default=None, help="taskset list for every process, e.g. '1' or '0,1'")
    p.add_argument("--data-dir", default=None, help="folder with Fashion-MNIST's IDX .gz files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="runs/time_to_bpd", help="run folders (tfflows' model, logs)")
    p.add_argument("--json-out", default=None)
    p.add_argument("--child", choices=["normflows"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    marks = sorted(args.report_at or [args.minutes])
    if not all(m > 0 and math.isfinite(m) for m in marks):
        p.error(f"expected minutes > 0, got {marks}")
    args.marks = marks
    return args


# -- data (numpy only: the normflows process imports no TensorFlow) ----------------------


def _idx_dir(data_dir: str | None) -> str:
    for folder in [data_dir] if data_dir else list(IDX_DIRS):
        if os.path.exists(os.path.join(folder, "t10k-images-idx3-ubyte.gz")):
            return folder
    raise SystemExit(
        f"time_to_bpd: no Fashion-MNIST IDX files in {data_dir or IDX_DIRS}; "
        "install the Debian package dataset-fashion-mnist or pass --data-dir."
    )


def read_images(folder: str, split: str):
    """uint8 [N, 28, 28] from an IDX .gz file (magic 0x00000803)."""
    import numpy as np

    name = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}[split]
    with gzip.open(os.path.join(folder, name), "rb") as f:
        raw = f.read()
    magic, n, h, w = (int.from_bytes(raw[i : i + 4], "big") for i in range(0, 16, 4))
    if magic != 0x803 or len(raw) != 16 + n * h * w:
        raise ValueError(
            f"{name}: expected an IDX file of uint8 images, got magic {magic:#x} and {len(raw)} bytes."
        )
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w)


# -- normflows, in its own process ------------------------------------------------------


def normflows_glow():
    """normflows' Glow recipe (examples/glow_colab.ipynb) at L=2, K=4, 128 channels, 1×28×28."""
    import normflows as nf

    shape = (1, 28, 28)
    q0, merges, flows = [], [], []
    for i in range(LEVELS):
        level = [
            nf.flows.GlowBlock(shape[0] * 2 ** (LEVELS + 1 - i), WIDTH, split_mode="channel", scale=True)
            for _ in range(STEPS)
        ]
        flows.append(level + [nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            latent = (
                shape[0] * 2 ** (LEVELS - i),
                shape[1] // 2 ** (LEVELS - i),
                shape[2] // 2 ** (LEVELS - i),
            )
        else:
            latent = (shape[0] * 2 ** (LEVELS + 1), shape[1] // 2**LEVELS, shape[2] // 2**LEVELS)
        q0.append(nf.distributions.GlowBase(latent))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


def run_normflows(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0")) or os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    folder = _idx_dir(args.data_dir)
    train = torch.from_numpy(read_images(folder, "train").astype(np.float32))[:, None]
    test = torch.from_numpy(read_images(folder, "test").astype(np.float32))[:, None]
    model = normflows_glow()
    optimizer = torch.optim.Adamax(model.parameters(), lr=1e-3, weight_decay=1e-5)
    batch, dims = 128, 28 * 28
    rng = np.random.default_rng(args.seed)

    def test_bpd() -> float:
        model.eval()
        gen = torch.Generator().manual_seed(args.seed + 1)
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(test), 500):
                k = test[i : i + 500]
                x = (k + torch.rand(k.shape, generator=gen)) / 256.0
                total += float(torch.sum(model(x))) / math.log(2) / dims + 8.0 * len(k)
        model.train()
        return total / len(test)

    marks = [m * 60.0 for m in args.marks]
    results, trained, steps, skipped = [], 0.0, 0, 0
    order, at = rng.permutation(len(train)), 0
    t0 = time.perf_counter()
    while marks:
        if at + batch > len(train):
            order, at = rng.permutation(len(train)), 0
        k = train[order[at : at + batch]]
        at += batch
        x = (k + torch.rand(k.shape)) / 256.0
        optimizer.zero_grad()
        loss = model.forward_kld(x)
        if torch.isfinite(loss):
            loss.backward()
            optimizer.step()
        else:
            skipped += 1
        steps += 1
        trained = time.perf_counter() - t0
        if trained >= marks[0]:
            began = time.perf_counter()
            bpd = test_bpd()
            took = time.perf_counter() - began
            results.append(
                {
                    "minutes": marks.pop(0) / 60.0,
                    "train_seconds": round(trained, 1),
                    "train_steps": steps,
                    "test_bits_per_dim": bpd,
                    "eval_seconds": round(took, 1),
                }
            )
            print(f"normflows: {results[-1]}", flush=True)
            t0 += took  # the clock pauses while it evaluates
    return {
        "system": "normflows",
        "version": _version("normflows"),
        "torch": _version("torch"),
        "threads": threads,
        "batch_size": batch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "skipped_steps": skipped,
        "at": results,
    }


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


# -- tfflows, through its command line --------------------------------------------------


def tfflows_command(args: argparse.Namespace, out: str) -> list[str]:
    budget = args.marks[-1]
    cmd = [
        sys.executable,
        "-m",
        "tfflows.cli",
        "train",
        "--model",
        "glow",
        "--dataset",
        "fashion_mnist",
        "--levels",
        str(LEVELS),
        "--steps",
        str(STEPS),
        "--width",
        str(WIDTH),
        "--epochs",
        "100000",
        "--time-limit",
        f"{budget:g}",
        "--seed",
        str(args.seed),
        "--verbose",
        "0",
        "--out",
        out,
        "--overwrite",
    ]
    if len(args.marks) > 1:
        cmd += ["--test-at", *(f"{m:g}" for m in args.marks)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    return cmd


def tfflows_results(out: str, marks: list[float]) -> dict:
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    at = [
        {
            "minutes": r["minutes"],
            "train_seconds": r["train_seconds"],
            "train_steps": r["train_steps"],
            "test_bits_per_dim": r["bits_per_dim"],
            "eval_seconds": r.get("eval_seconds"),
        }
        for r in res.get("test_at", [])
    ]
    if not at:  # one mark: the final figure
        at = [
            {
                "minutes": marks[-1],
                "train_seconds": res["train_seconds"],
                "train_steps": res["train_steps"],
                "test_bits_per_dim": res["test_bits_per_dim"],
                "eval_seconds": None,
            }
        ]
    return {
        "system": "tfflows",
        "parameters": res["parameters"],
        "batch_size": 64,
        "epochs_run": res["epochs_run"],
        "jit": res.get("jit"),
        "time_breakdown_s": res.get("time_breakdown_s"),
        "at": at,
    }


# -- the parent ---------------------------------------------------------------------------


def _pinned(cmd: list[str], cores: str | None) -> tuple[list[str], dict]:
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join([_REPO, os.environ.get("PYTHONPATH", "")]),
    )
    if cores is None:
        return cmd, env
    n = len([c for c in cores.split(",") if c.strip()])
    env.update(TF_NUM_INTRAOP_THREADS=str(n), TF_NUM_INTEROP_THREADS=str(n), OMP_NUM_THREADS=str(n))
    return ["taskset", "-c", cores] + cmd, env


def run_system(args: argparse.Namespace, system: str, round_: int) -> dict:
    out = os.path.abspath(os.path.join(args.runs, f"{system}_{round_}"))
    os.makedirs(out, exist_ok=True)
    if system == "tfflows":
        cmd = tfflows_command(args, out)
    else:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "normflows",
            "--child-out",
            os.path.join(out, "results.json"),
            "--seed",
            str(args.seed),
            "--report-at",
            *(f"{m:g}" for m in args.marks),
        ]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
    cmd, env = _pinned(cmd, args.cores)
    print("running:", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True, env=env, cwd=_REPO)
    if system == "tfflows":
        res = tfflows_results(out, args.marks)
    else:
        with open(os.path.join(out, "results.json")) as f:
            res = json.load(f)
    res.update(wall_seconds=round(time.time() - t0, 1), command=" ".join(cmd))
    print(json.dumps({k: res[k] for k in ("system", "at")}), flush=True)
    return res


def compare(runs: dict, marks: list[float], systems: list[str]) -> list[dict]:
    """One row per mark: each system's test bits/dim per run, and tfflows − normflows (medians)."""
    table = []
    for m in marks:
        row = {"minutes": m}
        for system, results in runs.items():
            # None: the run never trained to that mark (its budget went elsewhere, e.g. compiling)
            row[system] = [
                next((a["test_bits_per_dim"] for a in res["at"] if abs(a["minutes"] - m) < 1e-6), None)
                for res in results
            ]
        if len(systems) == 2 and all(v is not None for s in SYSTEMS for v in row[s]):
            a, b = (sorted(row[s])[len(row[s]) // 2] for s in SYSTEMS)
            row["tfflows_minus_normflows"] = round(a - b, 4)
            row["target_met"] = a - b <= -0.1
        table.append(row)
    return table


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, _REPO)
    if args.child:
        result = run_normflows(args)
        from tfflows.io import atomic_write_json  # after the clock: it imports TensorFlow

        atomic_write_json(args.child_out, result)
        return
    runs = {s: [] for s in args.systems}
    load = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for system in args.systems:
            runs[system].append(run_system(args, system, r))
    load.append(os.getloadavg()[0])
    table = compare(runs, args.marks, args.systems)
    report = {
        "cpu": cpu_name(),
        "cores": args.cores or f"all ({os.cpu_count()})",
        "load_average_1min": load,
        "date": time.strftime("%Y-%m-%d"),
        "marks_minutes": args.marks,
        "table": table,
        "runs": runs,
        "argv": sys.argv[1:],
    }
    print(json.dumps(table, indent=1))
    if args.json_out:
        from tfflows.io import atomic_write_json

        atomic_write_json(args.json_out, report)


if __name__ == "__main__":
    main()
