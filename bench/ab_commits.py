"""A/B throughput of two commits: the same benchmark, each run in its own process, alternating.

Checks the reference commit out into a temporary git worktree, then runs
``bench/glow_throughput.py --only tfflows`` (or another benchmark that
writes ``--json-out``) from the reference and from this checkout in turn,
A B A B …, so drifts in the machine's speed hit both alike. Reports each
run's median images/s and the ratio of the medians.

Usage::

    python bench/ab_commits.py --reference 0ea41b7 --rounds 3
    python bench/ab_commits.py --reference HEAD~3 -- --jit on --steps 32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from machine import cpu_name  # bench/machine.py (this folder is on sys.path when run)

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(root: str, bench: str, extra: list[str]) -> float:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        command = [sys.executable, os.path.join(root, bench), "--only", "tfflows", "--json-out", out, *extra]
        env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run(
            command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        if proc.returncode:
            raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
        with open(out) as f:
            result = json.load(f)
    finally:
        os.remove(out)
    return _images_per_second(result)


def _images_per_second(result: dict) -> float:
    """The best tfflows median img/s in a ``glow_throughput.py`` JSON."""
    rates = [r["images_per_s_median"] for r in result.get("results", []) if r.get("side") == "tfflows"]
    if not rates:
        raise ValueError(f"no tfflows result in the benchmark's JSON: {json.dumps(result)[:500]}")
    return max(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="the commit to compare against (A)")
    parser.add_argument("--rounds", type=int, default=3, help="A B pairs")
    parser.add_argument("--bench", default="bench/glow_throughput.py")
    parser.add_argument("extra", nargs="*", help="arguments for the benchmark (after --)")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="tfflows-ab-")
    reference = os.path.join(folder, "reference")
    subprocess.run(
        ["git", "-C", _REPO, "worktree", "add", "--detach", reference, args.reference],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        a, b = [], []
        for i in range(args.rounds):
            a.append(_run(reference, args.bench, args.extra))
            b.append(_run(_REPO, args.bench, args.extra))
            print(f"round {i + 1}: reference {a[-1]:.1f} img/s, this checkout {b[-1]:.1f} img/s", flush=True)
    finally:
        subprocess.run(["git", "-C", _REPO, "worktree", "remove", "--force", reference], check=False)
    ratio = statistics.median(b) / statistics.median(a)
    print(
        f"{cpu_name()}, {os.cpu_count()} cores: reference {args.reference} median "
        f"{statistics.median(a):.1f} img/s, this checkout {statistics.median(b):.1f} img/s, "
        f"ratio {ratio:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
