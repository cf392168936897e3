"""Writes tests/costly_tests.txt: the fast-tier tests that took longer than a threshold in a measured run.

    python -m pytest -q -m "not slow" -p no:randomly --junitxml=fast.xml   # one process, an idle core
    python scripts/tier_tests.py fast.xml                                  # --threshold 0.3 (seconds)

tests/conftest.py marks every test named in that file ``slow``: the full suite still runs it,
the fast tier (``-m "not slow"``) leaves it out. Tests that train, compile with XLA or start a
process are marked ``slow`` where they are written; this file holds the ones that are merely
costly (a trace of a large model, a float64 Jacobian, a docs page), measured rather than guessed.
Names already in the file stay unless ``--fresh``; names of tests that no longer exist are
dropped (the script collects the suite to know them). Run it again after adding costly tests;
scripts/fast_tier_coverage.py then checks that the fast tier still runs code in every module
of tfflows/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIST = ROOT / "tests" / "costly_tests.txt"
HEADER = (
    "# Fast-tier tests measured costlier than the threshold below: tests/conftest.py marks them slow.\n"
    "# Regenerate with scripts/tier_tests.py from a one-process run's JUnit XML.\n"
)


def node_id(classname: str, name: str) -> str:
    """``tests.test_x[.TestY]`` and ``test_z[p]`` as pytest's ``tests/test_x.py[::TestY]::test_z[p]``."""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = Path(*parts[:cut]).with_suffix(".py")
        if (ROOT / path).is_file():
            return "::".join([path.as_posix(), *parts[cut:], name])
    raise ValueError(f"tier_tests: no test file for JUnit classname {classname!r}")


def costly(junit: Path, threshold: float) -> dict[str, float]:
    """Node id -> seconds of every passed test of ``junit`` that took longer than ``threshold``."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        seconds = float(case.get("time", 0.0))
        if seconds > threshold:
            out[node_id(case.get("classname", ""), case.get("name", ""))] = seconds
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit", type=Path, nargs="+", help="JUnit XML of fast-tier runs")
    parser.add_argument("--threshold", type=float, default=0.3, help="seconds (default 0.3)")
    parser.add_argument("--fresh", action="store_true", help="forget the names already in the file")
    args = parser.parse_args(argv)
    names: dict[str, float] = {}
    for junit in args.junit:
        names.update(costly(junit, args.threshold))
    kept = set() if args.fresh or not LIST.exists() else set(read_list(LIST))
    lines = sorted((kept | set(names)) & collected())
    LIST.write_text(HEADER + f"# threshold: {args.threshold:g} s\n" + "".join(f"{n}\n" for n in lines))
    print(f"tier_tests: {len(lines)} tests in {LIST.relative_to(ROOT)} ({len(names)} measured now)")
    return 0


def collected() -> set[str]:
    """The node ids of every test of the suite as it is now (``pytest --collect-only``)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return {line.strip() for line in result.stdout.splitlines() if "::" in line}


def read_list(path: Path) -> list[str]:
    """The node ids in a costly-tests file (comments and blank lines skipped)."""
    return [
        line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]


if __name__ == "__main__":
    raise SystemExit(main())
