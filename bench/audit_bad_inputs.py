"""Audit: new bad inputs across every public surface of tfflows, graded good / poor / bad (issue 21).

Run::

    PYTHONPATH=$PWD python bench/audit_bad_inputs.py            # every surface, table to bench/
    PYTHONPATH=$PWD python bench/audit_bad_inputs.py --surface codec --show poor,bad

Each row is a call and what a careful user may expect of it:

- ``Refuse(subs)``: an error of the right type (``ValueError``; ``TypeError`` for
  wrong Python types) whose message names what came (``got ...``) and holds
  every substring of ``subs`` (a tuple in ``subs`` is "any of these");
- ``Handle(check)``: a valid input that must give a finite, well-shaped answer;
- ``Either(check, subs)``: either of the two;
- ``Cli(subs)``: ``tfflows.cli.main`` exits 2 with its last stderr line
  ``tfflows COMMAND: ...`` holding ``subs``, and prints no traceback.

Grades: ``good`` (the expectation met), ``poor`` (refused, but with a generic
error type or a message that lacks what was expected or what came), ``bad``
(accepted silently, a NaN or inf answer with no flag, a wrong shape, a CLI
traceback or internal error, a crash or a hang: each row runs under a time
limit, each surface in its own process, restarted after a crash).

The rows are new: none repeats a row of ``tests/test_bad_inputs.py`` (the
same kind of input on another model or another surface counts as new, as a
user would meet it there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from audit_rows import SURFACES  # noqa: E402

ROW_SECONDS = 360  # a row (with the surface's start-up) that takes longer is a hang


def _run_surface(surface: str, results: Path, workdir: Path) -> list[dict]:
    """Runs one surface's rows in child processes, restarting after a crash or hang."""
    out: list[dict] = []
    start = 0
    while True:
        lines = workdir / f"{surface}.{start}.jsonl"
        child = subprocess.Popen(
            [sys.executable, str(HERE / "audit_rows.py"), surface, str(start), str(lines), str(workdir)],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / f"{surface}.{start}.stderr", "w"),
        )
        seen, last = 0, time.monotonic()
        while child.poll() is None:
            time.sleep(0.5)
            count = len(lines.read_text().splitlines()) if lines.exists() else 0
            if count != seen:
                seen, last = count, time.monotonic()
            elif time.monotonic() - last > ROW_SECONDS:
                child.kill()
                child.wait()
                break
        rows = [json.loads(x) for x in lines.read_text().splitlines()] if lines.exists() else []
        done = [r for r in rows if r.get("id") != "__end__"]
        out += done
        if rows and rows[-1].get("id") == "__end__":
            return out
        # the child died or hung on the row after the last one it wrote
        index = start + len(done)
        how = (
            "hang (no answer in time)"
            if child.returncode in (-9, None)
            else f"crash (exit {child.returncode})"
        )
        ids = rows[-1]["ids"] if rows and "ids" in rows[-1] else None
        row_id = f"row {index}"
        ids_file = workdir / f"{surface}.ids.json"
        if ids_file.exists():
            ids = json.loads(ids_file.read_text())
            if index >= len(ids):
                return out
            row_id = ids[index]
        out.append({"surface": surface, "id": row_id, "grade": "bad", "note": how, "call": row_id})
        start = index + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surface", nargs="*", default=list(SURFACES))
    parser.add_argument("--show", default="poor,bad", help="grades whose rows are printed")
    parser.add_argument("--out", default=str(HERE / "audit_bad_inputs"), help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    import tempfile

    rows: list[dict] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tfflows_audit_") as tmp:
        for surface in args.surface:
            t0 = time.monotonic()
            got = _run_surface(surface, Path(tmp), Path(tmp))
            rows += got
            counts = Counter(r["grade"] for r in got)
            print(
                f"{surface:14s} {len(got):4d} rows  good {counts['good']:4d}  poor {counts['poor']:3d}  "
                f"bad {counts['bad']:3d}  ({time.monotonic() - t0:.0f} s)",
                flush=True,
            )
    show = set(args.show.split(","))
    for r in rows:
        if r["grade"] in show:
            print(f"  [{r['grade']}] {r['surface']}/{r['id']}: {r['note']}")
    total = Counter(r["grade"] for r in rows)
    print(
        f"TOTAL {len(rows)} rows: good {total['good']}, poor {total['poor']}, bad {total['bad']} "
        f"({time.monotonic() - began:.0f} s)"
    )
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(rows, indent=1))
        Path(args.out + ".md").write_text(_markdown(rows))
    return 0


def _markdown(rows: list[dict]) -> str:
    by = Counter((r["surface"], r["grade"]) for r in rows)
    surfaces = list(dict.fromkeys(r["surface"] for r in rows))
    lines = [
        "# Bad-input audit (bench/audit_bad_inputs.py)",
        "",
        "| surface | rows | good | poor | bad |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in surfaces:
        n = sum(by[(s, g)] for g in ("good", "poor", "bad"))
        lines.append(f"| {s} | {n} | {by[(s, 'good')]} | {by[(s, 'poor')]} | {by[(s, 'bad')]} |")
    total = Counter(r["grade"] for r in rows)
    lines.append(f"| **all** | {len(rows)} | {total['good']} | {total['poor']} | {total['bad']} |")
    lines += ["", "## Rows not good", ""]
    for r in rows:
        if r["grade"] != "good":
            lines.append(f"- **{r['grade']}** `{r['surface']}/{r['id']}`: {r['note']}")
    lines += ["", "## Every row", "", "| surface | row | grade | outcome |", "|---|---|---|---|"]
    for r in rows:
        note = r["note"].replace("|", "\\|").replace("\n", " ")[:200]
        lines.append(f"| {r['surface']} | `{r['id']}` | {r['grade']} | {note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
