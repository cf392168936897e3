"""The README's main job (``tfflows train``) from a fresh process: its wall time, CPU time and parts.

Runs ``python -m tfflows.cli train --out TMP [ARGS]`` (the main job: Glow on
the embedded digits, 20 epochs) from this checkout and, with
``--reference COMMIT``, from that commit too (exported with ``git archive``),
alternating A B A B so drifts in the machine's load hit both alike. Each run
is its own process. For each it records the process's wall time and CPU time
(user + system, which a shared machine's load disturbs far less than the wall
time), the run's ``time_breakdown_s`` from results.json (``first_step``: from
the start of ``fit`` to the end of its first batch, tracing included; the
callbacks' epoch-end work), the test bits/dim, the CPU and the load average
before the run. Prints one line per run and the ratios this/reference of the
medians; ``--json-out`` keeps everything.

Usage::

    python bench/first_run.py --reference d5cc662 --rounds 2
    python bench/first_run.py --rounds 1 -- --epochs 2        # a shorter job, this checkout only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from machine import cpu_name  # bench/machine.py (this folder is on sys.path when run)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRAS = ("SampleCheck", "FiniteCheckpoint", "ResumableBackup", "SampleGrid", "TensorBoardSamples")


def _export(commit: str, folder: str) -> str:
    """The tree of ``commit`` written to ``folder`` (no worktree, no git state)."""
    os.makedirs(folder)
    archive = subprocess.run(["git", "-C", _REPO, "archive", commit], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    return folder


def run_once(root: str, extra: list[str]) -> dict:
    """One main job from the package at ``root``, in its own process."""
    out = tempfile.mkdtemp(prefix="first_run_")
    try:
        env = {**os.environ, "PYTHONPATH": root}
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it
        load = os.getloadavg()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        command = [sys.executable, "-m", "tfflows.cli", "train", "--out", os.path.join(out, "run"), *extra]
        proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode:
            raise RuntimeError(f"the run from {root} failed:\n{proc.stderr[-3000:]}")
        with open(os.path.join(out, "run", "results.json")) as f:
            results = json.load(f)
        parts = results["time_breakdown_s"]
        return {
            "wall_s": round(wall, 2),
            "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2),
            "first_step_s": parts.get("first_step"),
            "extras_s": round(sum(parts.get(f"callback:{name}", 0.0) for name in EXTRAS), 2),
            "fit_s": parts.get("total"),
            "breakdown_s": parts,
            "test_bits_per_dim": results.get("test_bits_per_dim"),
            "epochs": results.get("epochs_run"),
            "load_average_before": [round(x, 2) for x in load],
            "stdout_lines": len(proc.stdout.splitlines()),
            "stderr_lines": len(proc.stderr.splitlines()),
            "stderr": proc.stderr[-2000:],
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", default=None, help="a commit to compare against (A)")
    parser.add_argument(
        "--this",
        default=None,
        metavar="COMMIT",
        help="run this commit (exported) instead of the checkout as it is, so that "
        "edits during a long comparison do not change it",
    )
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side (A B pairs)")
    parser.add_argument("--json-out", default=None)
    parser.add_argument("extra", nargs="*", help="arguments for tfflows train (after --)")
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="first_run_src_")
    this = _REPO if args.this is None else _export(args.this, os.path.join(scratch, "this"))
    sides = {"this": this}
    if args.reference:
        sides = {"reference": _export(args.reference, os.path.join(scratch, "reference")), "this": this}
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; tfflows train {' '.join(args.extra)}")
    try:
        for round_ in range(args.rounds):
            for side, root in sides.items():
                result = run_once(root, args.extra)
                runs[side].append(result)
                print(
                    f"round {round_ + 1} {side:9s}: wall {result['wall_s']:7.1f} s, "
                    f"CPU {result['cpu_s']:6.1f} s, first step {result['first_step_s']:6.1f} s, "
                    f"extras {result['extras_s']:5.1f} s, "
                    f"fit {result['fit_s']:6.1f} s, test bits/dim {result['test_bits_per_dim']:.4f}, "
                    f"stderr lines {result['stderr_lines']}, load {result['load_average_before'][0]}",
                    flush=True,
                )
            if args.json_out:  # after every run: a long comparison cut short keeps what it measured
                with open(args.json_out, "w") as f:
                    json.dump(
                        {
                            "cpu": cpu_name(),
                            "reference": args.reference,
                            "this": args.this,
                            "extra": args.extra,
                            "runs": runs,
                        },
                        f,
                        indent=1,
                    )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    keys = ("wall_s", "cpu_s", "first_step_s", "extras_s", "fit_s", "test_bits_per_dim")
    summary = {
        side: {key: statistics.median(r[key] for r in rs) for key in keys} for side, rs in runs.items()
    }
    for side, medians in summary.items():
        print(f"median {side:9s}: " + ", ".join(f"{k} {v:.2f}" for k, v in medians.items()))
    if args.reference:
        ratios = {
            k: round(summary["this"][k] / summary["reference"][k], 3)
            for k in ("wall_s", "cpu_s", "first_step_s", "fit_s")
            if summary["reference"][k]
        }
        print("this / reference: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
        summary["ratios"] = ratios
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(
                {
                    "cpu": cpu_name(),
                    "reference": args.reference,
                    "this": args.this,
                    "extra": args.extra,
                    "runs": runs,
                    "medians": summary,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
