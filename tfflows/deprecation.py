"""Old argument names kept for one release: one word per idea, without breaking callers."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DENSE_NAMES", "conditioner_size", "old_argument_names", "renamed_argument", "renamed_keys"]

_T = TypeVar("_T", bound=Callable[..., Any])  # a function or a class

DENSE_NAMES = {"hidden_channels": "hidden_units", "num_blocks": "num_hidden"}
"""A dense conditioner's old size names and their new ones (vector models and MADE use the new)."""


def renamed_argument(
    owner: str, new: str, new_value: Any, old: str, old_value: Any, default: Any, stacklevel: int = 3
) -> Any:
    """The value of argument ``new``, which was called ``old`` before.

    ``None`` means "not given" for both. The old name still works and gives a
    ``DeprecationWarning``; giving both is an error.

    Raises:
      ValueError: both ``new`` and ``old`` were given.
    """
    if old_value is None:
        return default if new_value is None else new_value
    if new_value is not None:
        raise ValueError(
            f"{owner}: expected {new} or its deprecated old name {old}, not both; "
            f"got {new}={new_value!r} and {old}={old_value!r}."
        )
    warnings.warn(
        f"{owner}: the argument {old} is deprecated and goes in the next release; use {new}.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return old_value


def conditioner_size(
    owner: str,
    dense: bool,
    hidden_channels: int | None,
    num_blocks: int | None,
    hidden_units: int | None,
    num_hidden: int | None,
    default_width: int,
    default_depth: int,
) -> tuple[int, int]:
    """(width, depth) of a built-in conditioner, from the names that fit its kind.

    A dense (MLP) conditioner is sized by ``hidden_units`` and ``num_hidden``,
    as the vector models and MADE are; a convolutional one by
    ``hidden_channels`` and ``num_blocks``. A dense one also takes the
    convolutional names, deprecated (that is what it took before).

    Raises:
      ValueError: a dense name for a convolutional conditioner, or a dense
        conditioner given a name and its deprecated alias.
    """
    if dense:
        width = renamed_argument(
            owner,
            "hidden_units",
            hidden_units,
            "hidden_channels",
            hidden_channels,
            default_width,
            stacklevel=4,
        )
        depth = renamed_argument(
            owner, "num_hidden", num_hidden, "num_blocks", num_blocks, default_depth, stacklevel=4
        )
        return width, depth
    for name, value in (("hidden_units", hidden_units), ("num_hidden", num_hidden)):
        if value is not None:
            raise ValueError(
                f"{owner}: {name} sizes a dense ('mlp') conditioner; expected "
                f"hidden_channels and num_blocks for this one, got {name}={value!r}."
            )
    return (
        default_width if hidden_channels is None else hidden_channels,
        default_depth if num_blocks is None else num_blocks,
    )


def renamed_keys(config: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """A copy of a saved ``config`` with each old key of ``renames`` under its new name.

    Files saved before a rename load without a warning: the names in a file
    are not the caller's to change.
    """
    config = dict(config)
    for old, new in renames.items():
        if old in config and new not in config:
            config[new] = config.pop(old)
    return config


def old_argument_names(renames: dict[str, str]) -> Callable[[_T], _T]:
    """A decorator: a function, or a class's constructor, still takes each old argument name.

    ``renames`` maps an old name to its new one. A caller's old name becomes
    the new one with a ``DeprecationWarning`` naming both; giving both is a
    ``ValueError``. On a class the map is kept as ``OLD_ARGUMENT_NAMES``
    (merged with its bases'), so ``from_config`` can read configs saved
    before the rename without a warning (:func:`renamed_keys`).
    """

    def wrap(function: Callable[..., Any], owner: str) -> Callable[..., Any]:
        @functools.wraps(function)
        def renamed(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise ValueError(
                        f"{owner}: expected {new} or its deprecated old name "
                        f"{old}, not both; got {new}={kwargs[new]!r} and "
                        f"{old}={kwargs[old]!r}."
                    )
                warnings.warn(
                    f"{owner}: the argument {old} is deprecated and goes in the next release; use {new}.",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        # Keras reads a constructor's argspec (inspect.getfullargspec, which does not follow
        # functools.wraps) beside its signature: both must show the real arguments.
        del renamed.__wrapped__
        renamed.__signature__ = inspect.signature(function)  # type: ignore[attr-defined]
        return renamed

    def decorate(target: _T) -> _T:
        if not isinstance(target, type):
            return wrap(target, target.__name__)  # type: ignore[return-value]
        target.__init__ = wrap(target.__init__, target.__name__)  # type: ignore[misc]
        target.OLD_ARGUMENT_NAMES = {  # type: ignore[attr-defined]
            **getattr(target, "OLD_ARGUMENT_NAMES", {}),
            **renames,
        }
        return target

    return decorate
