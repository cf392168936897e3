"""Tabular data: numeric CSV files and seeded train/validation splits (numpy only)."""

from __future__ import annotations

import csv
import math
import os
from typing import Sequence

import numpy as np

__all__ = ["is_csv", "load_csv", "split_rows"]


def is_csv(dataset: str) -> bool:
    """True when ``dataset`` names a CSV file (by its ``.csv`` suffix)."""
    return dataset.lower().endswith(".csv")


def load_csv(path: str | os.PathLike, columns: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Reads a CSV file with a header row into a float64 array [rows, columns].

    Args:
      path: the file; its first row names the columns.
      columns: the columns to keep, in this order (default: all of them).

    Returns:
      ``(values, names)``.

    Raises:
      ValueError: a file that is not UTF-8 text or not CSV, unknown or
        repeated column names, no data rows, rows of the wrong length, or a
        missing or non-numeric value (naming its column and row; rows count
        from 1 after the header). Every message starts with the path.
    """
    path = os.fspath(path)
    try:
        return _read_csv(path, columns)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: expected UTF-8 text, got byte {err.object[err.start]:#04x} at "
                         f"byte {err.start}.") from None
    except csv.Error as err:
        raise ValueError(f"{path}: expected CSV text, got a line the csv module refuses ({err}).") from None


def _read_csv(path: str, columns: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    # utf-8-sig: a byte-order mark (as spreadsheet programs write it) is no part of the first name.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}: expected a header row naming the columns, got an empty file.")
        header = [name.strip() for name in header]
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise ValueError(f"{path}: expected each column named once, got {repeated} more than once.")
        if columns:
            unknown = [c for c in columns if c not in header]
            if unknown:
                raise ValueError(f"{path}: expected columns from {header}, got unknown {unknown}.")
            keep = [header.index(c) for c in columns]
        else:
            keep = list(range(len(header)))
        names = [header[i] for i in keep]
        rows = []
        for row_number, row in enumerate(reader, start=1):
            if not row or all(not cell.strip() for cell in row):
                continue  # blank lines, e.g. a trailing one
            if len(row) != len(header):
                raise ValueError(f"{path}: row {row_number}: expected {len(header)} values "
                                 f"(one per column), got {len(row)}.")
            values = []
            for i in keep:
                cell = row[i].strip()
                if not cell:
                    raise ValueError(f"{path}: column {header[i]!r}, row {row_number}: "
                                     "expected a number, got a missing value.")
                try:
                    value = float(cell)
                except ValueError:
                    raise ValueError(f"{path}: column {header[i]!r}, row {row_number}: "
                                     f"expected a number, got {cell!r}.") from None
                if not math.isfinite(value):
                    raise ValueError(f"{path}: column {header[i]!r}, row {row_number}: "
                                     f"expected a finite number, got {cell!r}.")
                values.append(value)
            rows.append(values)
    if not rows:
        raise ValueError(f"{path}: expected data rows after the header, got none.")
    return np.asarray(rows, dtype=np.float64), names


def split_rows(num_rows: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle of ``range(num_rows)`` cut into (train, validation) indices.

    The validation part has ``round(val_fraction · num_rows)`` rows, at least
    one when ``val_fraction > 0``; the training part keeps at least one.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}.")
    if num_rows < 1:
        raise ValueError(f"split_rows: expected at least 1 row, got {num_rows}.")
    order = np.random.default_rng(seed).permutation(num_rows)
    n_val = 0 if val_fraction == 0 else min(max(1, round(val_fraction * num_rows)), num_rows - 1)
    if num_rows < 2 and val_fraction > 0:
        raise ValueError(f"a validation split needs at least 2 rows, got {num_rows}.")
    return np.sort(order[n_val:]), np.sort(order[:n_val])
