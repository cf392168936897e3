"""Checks that the fast tier touches every module of tfflows/: some function body in it runs.

    python scripts/fast_tier_coverage.py              # runs the fast tier under coverage, then checks
    python scripts/fast_tier_coverage.py --json PATH  # checks a coverage JSON report made before

Importing a module runs only its ``def`` and ``class`` lines, so a module counts as touched when
at least one line inside one of its functions or methods ran (a module without functions counts
when it was imported). The fast tier is ``pytest -m "not slow"``; it runs in two processes, as in
the README, with pytest-cov collecting from both. Exits 1 and names the untouched modules.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tfflows"


def run_fast_tier(report: Path) -> int:
    """Runs the fast tier with coverage of tfflows; returns pytest's exit status."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-m",
        "not slow",
        "-n",
        "2",
        "-p",
        "no:cacheprovider",
        f"--cov={PACKAGE}",
        f"--cov-report=json:{report}",
        "tests",
    ]
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def untouched(report: dict) -> list[str]:
    """The modules of tfflows/ none of whose function bodies ran, by path relative to the root."""
    files = {str(Path(name).resolve()): data for name, data in report["files"].items()}
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        data = files.get(str(path.resolve()))
        name = str(path.relative_to(ROOT))
        if data is None:
            missing.append(f"{name} (never imported)")
            continue
        functions = {k: v for k, v in data.get("functions", {}).items() if k}  # "" is module level
        if functions and not any(f["summary"]["covered_lines"] for f in functions.values()):
            missing.append(f"{name} (imported, but none of its {len(functions)} functions ran)")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="a coverage JSON report to check instead of running")
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = Path(tempfile.mkdtemp()) / "coverage.json"
        status = run_fast_tier(args.json)
        if status not in (0, 1):  # 1: some test failed; the coverage still counts
            print(f"fast_tier_coverage: pytest exited with status {status}", file=sys.stderr)
            return status
    missing = untouched(json.loads(args.json.read_text()))
    total = len(list(PACKAGE.rglob("*.py")))
    if missing:
        print(f"fast_tier_coverage: {len(missing)} of {total} modules not touched by the fast tier:")
        for line in missing:
            print(f"  {line}")
        return 1
    print(f"fast_tier_coverage: the fast tier runs code in all {total} modules of tfflows/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
