"""Old argument names kept for one release: one word per idea, without breaking callers."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["renamed_argument"]


def renamed_argument(owner: str, new: str, new_value: Any, old: str, old_value: Any,
                     default: Any, stacklevel: int = 3) -> Any:
    """The value of argument ``new``, which was called ``old`` before.

    ``None`` means "not given" for both. The old name still works and gives a
    ``DeprecationWarning``; giving both is an error.

    Raises:
      ValueError: both ``new`` and ``old`` were given.
    """
    if old_value is None:
        return default if new_value is None else new_value
    if new_value is not None:
        raise ValueError(f"{owner}: expected {new} or its deprecated old name {old}, not both; "
                         f"got {new}={new_value!r} and {old}={old_value!r}.")
    warnings.warn(f"{owner}: the argument {old} is deprecated and goes in the next release; "
                  f"use {new}.", DeprecationWarning, stacklevel=stacklevel)
    return old_value
