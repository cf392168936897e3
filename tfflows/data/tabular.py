"""Tabular data: numeric CSV files and seeded train/validation splits (numpy only)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence

import numpy as np

__all__ = ["MIN_TRAIN_ROWS", "check_columns_flag", "is_csv", "load_csv", "split_rows", "split_table"]


def is_csv(dataset: str) -> bool:
    """True when ``dataset`` names a CSV file (by its ``.csv`` suffix)."""
    return dataset.lower().endswith(".csv")


def check_columns_flag(dataset: str, columns: str | Sequence[str] | None) -> None:
    """Refuses a column choice for a dataset that is not a CSV file (it would be ignored)."""
    if columns is not None and not is_csv(dataset):
        raise ValueError(
            f"--columns picks columns of a CSV file (--dataset FILE.csv), got --dataset "
            f"{dataset!r}, which has none."
        )


def load_csv(path: str | os.PathLike, columns: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Reads a CSV file with a header row into a float64 array [rows, columns].

    Args:
      path: the file; its first row names the columns.
      columns: the columns to keep, in this order (default: all of them).

    Returns:
      ``(values, names)``.

    Raises:
      ValueError: unknown columns, no data rows, rows of the wrong length, or
        a missing or non-numeric value (naming its column and row; rows
        count from 1 after the header).
    """
    path = os.fspath(path)
    try:
        # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of the first name.
        with open(path, newline="", encoding="utf-8-sig") as f:
            return _read_csv(path, csv.reader(f), columns)
    except csv.Error as err:
        raise ValueError(f"{path}: expected CSV text, got a line the csv module refuses ({err}).") from None
    except UnicodeDecodeError as err:
        line = _line_of(path, err.start)
        raise ValueError(
            f"{path}: expected UTF-8 text, got the byte 0x{err.object[err.start]:02x} at "
            f"byte {err.start} (line {line}); save the file as UTF-8."
        ) from None


def _line_of(path: str, offset: int) -> int:
    with open(path, "rb") as f:
        return f.read(offset).count(b"\n") + 1


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: str, reader, columns: Sequence[str] | None) -> tuple[np.ndarray, list[str]]:
    header = next(reader, None)
    if not header:
        raise ValueError(f"{path}: expected a header row naming the columns, got an empty file.")
    header = [name.strip() for name in header]
    if all(_is_number(name) for name in header):
        raise ValueError(
            f"{path}: expected a header row naming the columns, got the numbers "
            f"{header[:6]}{' ...' if len(header) > 6 else ''} (a data row?); add a first "
            "row with the column names."
        )
    unnamed = [i + 1 for i, name in enumerate(header) if not name]
    if unnamed:
        raise ValueError(
            f"{path}: expected a name for every column in the header row, got none for column(s) {unnamed}."
        )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValueError(f"{path}: expected distinct column names, got {repeated} more than once.")
    if columns is not None:
        columns = [str(c).strip() for c in columns]
        if not columns or any(not c for c in columns):
            raise ValueError(f"{path}: expected column names, comma-separated, got {columns}.")
        asked_twice = sorted({c for c in columns if columns.count(c) > 1})
        if asked_twice:
            raise ValueError(f"{path}: expected each column once in columns, got {asked_twice} twice.")
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
            raise ValueError(
                f"{path}: row {row_number}: expected {len(header)} values (one per column), got {len(row)}."
            )
        values = []
        for i in keep:
            cell = row[i].strip()
            if not cell:
                raise ValueError(
                    f"{path}: column {header[i]!r}, row {row_number}: expected a number, got a missing value."
                )
            try:
                value = float(cell)
            except ValueError:
                raise ValueError(
                    f"{path}: column {header[i]!r}, row {row_number}: expected a number, got {cell!r}."
                ) from None
            if not math.isfinite(value):
                raise ValueError(
                    f"{path}: column {header[i]!r}, row {row_number}: expected a finite number, got {cell!r}."
                )
            values.append(value)
        rows.append(values)
    if not rows:
        raise ValueError(f"{path}: expected data rows after the header, got none.")
    return np.asarray(rows, dtype=np.float64), names


MIN_TRAIN_ROWS = 10
"""The fewest training rows a split leaves: fewer (a 2-row file trains on one) fit no density."""


def _held_out(fraction: float, num_rows: int) -> int:
    """Rows a fraction holds out: ``round(fraction · num_rows)``, at least one when the fraction is > 0."""
    return 0 if fraction == 0 else max(1, round(fraction * num_rows))


def split_rows(
    num_rows: int, val_fraction: float, seed: int, min_train: int = MIN_TRAIN_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle of ``range(num_rows)`` cut into (train, validation) indices.

    The validation part has ``round(val_fraction · num_rows)`` rows, at least
    one when ``val_fraction > 0``; the training part keeps at least
    ``min_train`` rows, else a ValueError says how many there are.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}.")
    n_val = _held_out(val_fraction, num_rows)
    if num_rows - n_val < min_train:
        raise ValueError(
            f"expected at least {min_train} training rows, got {num_rows} rows of which "
            f"{max(num_rows - n_val, 0)} would train and {n_val} validate (val_fraction "
            f"{val_fraction:g}); give more rows."
        )
    order = np.random.default_rng(seed).permutation(num_rows)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def split_table(
    num_rows: int, val_fraction: float, test_fraction: float, seed: int, min_train: int = MIN_TRAIN_ROWS
) -> dict[str, np.ndarray]:
    """Seeded shuffle of ``range(num_rows)`` cut into train, validation and test row indices.

    The three parts never share a row: the test rows (``round(test_fraction · num_rows)``,
    at least one when the fraction is > 0) come first in the shuffled order, then the
    validation rows (the same rule), and the training rows are the rest, at least
    ``min_train`` of them. Early stopping picks its epoch on the validation rows; the
    figure a run reports comes from the test rows, which picked nothing.

    Raises:
      ValueError: a fraction outside [0, 1), fractions that sum to 1 or more, or a table
        too small to keep ``min_train`` training rows (the message names the minimum).
    """
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction!r}.")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            "val_fraction + test_fraction must leave training rows, "
            f"got {val_fraction:g} + {test_fraction:g}."
        )

    n_test, n_val = _held_out(test_fraction, num_rows), _held_out(val_fraction, num_rows)
    if num_rows - n_test - n_val < min_train:
        needed = next(
            n
            for n in range(1, 10**9)
            if n - _held_out(test_fraction, n) - _held_out(val_fraction, n) >= min_train
        )
        raise ValueError(
            f"expected at least {needed} rows for a split with {min_train} training rows, "
            f"validation fraction {val_fraction:g} and test fraction {test_fraction:g}; got {num_rows} rows "
            f"({max(num_rows - n_test - n_val, 0)} would train). Give more rows or smaller fractions."
        )
    order = np.random.default_rng(seed).permutation(num_rows)
    return {
        "test": np.sort(order[:n_test]),
        "validation": np.sort(order[n_test : n_test + n_val]),
        "train": np.sort(order[n_test + n_val :]),
    }
