"""The model registry: one entry per model drives the CLI, the docs' model list and the contract tests.

An entry (:class:`ModelEntry`) says what a model is called, which data it
models, how a front end builds it from the shared options
(:class:`BuildOptions`, in the glossary's words) and how to build a tiny one
for the model-contract tests. ``tfflows train --model NAME`` offers every
registered name, builds through the entry (no if-chain), and the contract
test (``tests/test_model_contract.py``) runs every entry through change of
variables, round trip, sampling, ``fit``, saving, export and the TFP
distribution.

Adding a model is one file and one registration::

    # mypackage/my_flow.py
    class MyFlow(tfflows.FlowModel): ...

    register_model(ModelEntry(
        name="my-flow", data_kind="image", model_class=MyFlow,
        build=lambda o: MyFlow(o.event_shape, num_steps=o.num_steps or 4, width=o.width,
                               num_bits=o.image_num_bits, num_classes=o.num_classes, **o.policy),
        tiny=lambda **cond: MyFlow((4, 4, 1), num_steps=2, width=8, num_bits=5, **cond)))

tfflows' own models register in their modules; :data:`BUILTIN` names those
modules so that the command line can list the names without importing
TensorFlow, and :func:`entries` imports them on first use.

This module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "BUILTIN",
    "BuildOptions",
    "ModelEntry",
    "entries",
    "get_model",
    "model_names",
    "own_trainer",
    "register_model",
    "unregister_model",
]

BUILTIN: dict[tuple[str, str], str] = {
    ("glow", "image"): "tfflows.models.glow",
    ("realnvp", "image"): "tfflows.models.realnvp",
    ("tarflow", "image"): "tfflows.models.tarflow",
    ("jet", "image"): "tfflows.models.jet",
    ("idf", "image"): "tfflows.models.idf",
    ("glow", "vector"): "tfflows.models.vector",
    ("realnvp", "vector"): "tfflows.models.vector",
    ("nsf", "vector"): "tfflows.models.vector",
    ("maf", "vector"): "tfflows.models.maf",
    ("maf-spline", "vector"): "tfflows.models.maf",
}
"""(name, data kind) → the module whose import registers that built-in model."""

_ENTRIES: dict[tuple[str, str], ModelEntry] = {}


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """What a front end (the CLI) says about the model to build, in the glossary's words.

    Attributes:
      event_shape: shape of one example.
      num_bits: bits per pixel of image data (None for vector data).
      num_classes: number of classes of a class-conditional model, or None.
      num_levels: scales of a multi-scale image model.
      num_steps: flow steps (per level for multi-scale models); None: the model's CLI default.
      width: width of the conditioner networks.
      depth: depth of the conditioner networks; None: the model's default.
      coupling: coupling transform name (``"affine"``, ``"additive"``).
      seed: seed of the model's fixed permutations.
      standardize: whether a vector model starts with a fitted Standardize step.
      dtype: a Keras dtype policy name.
      backprop: ``"store"``, ``"recompute"`` or ``"reversible"``.
      extra: model-specific options (e.g. TarFlow's ``noise``), only those given.
    """

    event_shape: tuple[int, ...]
    num_bits: int | None = None
    num_classes: int | None = None
    num_levels: int = 2
    num_steps: int | None = None
    width: int = 64
    depth: int | None = None
    coupling: str = "affine"
    seed: int = 0
    standardize: bool = True
    dtype: str = "float32"
    backprop: str = "store"
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def image_num_bits(self) -> int:
        """``num_bits``, which every image model needs.

        Raises:
          ValueError: ``num_bits`` is None (vector data).
        """
        if self.num_bits is None:
            raise ValueError(
                f"an image model needs num_bits (bits per pixel), got None for data of "
                f"shape {self.event_shape}."
            )
        return self.num_bits

    @property
    def policy(self) -> dict[str, Any]:
        """``dtype`` and ``backprop`` as keyword arguments every model takes."""
        return {"dtype": self.dtype, "backprop": self.backprop}


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
      name: the name users type (``tfflows train --model NAME``).
      data_kind: ``"image"`` or ``"vector"``: the data the entry builds a model for.
      model_class: the model's class (a :class:`tfflows.FlowModel` subclass, or a
        ``keras.Model`` with its own contract, like the codec's :class:`tfflows.IDF`).
      build: ``BuildOptions`` → a model (the CLI's builder).
      tiny: ``**conditioning`` → a tiny model for the contract tests, where
        ``conditioning`` is ``{}``, ``{"num_classes": k}`` or ``{"context_dim": c}``.
      conditioning: which of ``"num_classes"`` / ``"context_dim"`` the model takes.
      summary: one line for ``--help`` and the docs' model list.
      train: for a model that ``tfflows train`` trains its own way (the codec's
        integer flow), ``args -> results``; None for the shared training run.
    """

    name: str
    data_kind: str
    model_class: type
    build: Callable[[BuildOptions], Any]
    tiny: Callable[..., Any]
    conditioning: tuple[str, ...] = ("num_classes", "context_dim")
    summary: str = ""
    train: Callable[[Any], dict] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or self.name != self.name.strip():
            raise ValueError(
                f"ModelEntry: name must be a non-empty string without spaces around it, got {self.name!r}."
            )
        if self.data_kind not in ("image", "vector"):
            raise ValueError(
                f"ModelEntry {self.name!r}: data_kind must be 'image' or 'vector', got {self.data_kind!r}."
            )
        if not isinstance(self.model_class, type):
            raise ValueError(
                f"ModelEntry {self.name!r}: model_class must be a class, got {self.model_class!r}."
            )
        for key in ("build", "tiny") + (("train",) if self.train is not None else ()):
            if not callable(getattr(self, key)):
                raise ValueError(
                    f"ModelEntry {self.name!r}: {key} must be callable, got {getattr(self, key)!r}."
                )
        if isinstance(self.conditioning, str) or not isinstance(self.conditioning, (tuple, list)):
            raise ValueError(
                f"ModelEntry {self.name!r}: conditioning must be a tuple of names, got {self.conditioning!r}."
            )
        unknown = set(self.conditioning) - {"num_classes", "context_dim"}
        if unknown:
            raise ValueError(
                f"ModelEntry {self.name!r}: conditioning may hold 'num_classes' and "
                f"'context_dim', got {sorted(unknown)}."
            )


def register_model(entry: ModelEntry, overwrite: bool = False) -> ModelEntry:
    """Adds ``entry`` under (name, data kind); returns it.

    Raises:
      ValueError: that name and data kind are taken (unless ``overwrite``).
    """
    if not isinstance(entry, ModelEntry):
        raise ValueError(f"register_model: expected a ModelEntry, got {type(entry).__name__} {entry!r}.")
    key = (entry.name, entry.data_kind)
    if key in _ENTRIES and not overwrite and _ENTRIES[key] is not entry:
        raise ValueError(
            f"register_model: a {entry.data_kind} model named {entry.name!r} is "
            f"registered already ({_ENTRIES[key].model_class.__name__}); pass "
            "overwrite=True to replace it."
        )
    _ENTRIES[key] = entry
    return entry


def unregister_model(name: str, data_kind: str) -> None:
    """Removes a registered model (tests that register a toy model clean up with it)."""
    _ENTRIES.pop((name, data_kind), None)


def _load_builtin() -> None:
    for module in sorted(set(BUILTIN.values())):
        importlib.import_module(module)


def entries(data_kind: str | None = None) -> list[ModelEntry]:
    """Every registered model (built-ins imported on first use), optionally of one data kind."""
    _check_kind(data_kind)
    _load_builtin()
    return [e for e in _ENTRIES.values() if data_kind is None or e.data_kind == data_kind]


def model_names(data_kind: str | None = None) -> tuple[str, ...]:
    """The registered names, in registration order, without importing the built-in models."""
    _check_kind(data_kind)
    keys = list(BUILTIN) + [k for k in _ENTRIES if k not in BUILTIN]
    seen: dict[str, None] = {}
    for name, kind in keys:
        if data_kind is None or kind == data_kind:
            seen.setdefault(name, None)
    return tuple(seen)


def _check_kind(data_kind: str | None) -> None:
    if data_kind is not None and data_kind not in ("image", "vector"):
        raise ValueError(f"data_kind must be 'image', 'vector' or None, got {data_kind!r}.")


def own_trainer(name: str) -> Callable[[Any], dict] | None:
    """The ``train`` of a model named ``name`` that trains its own way, or None."""
    if not any(n == name for n, _ in _ENTRIES):
        _load_builtin()
    return next((e.train for (n, _), e in _ENTRIES.items() if n == name and e.train is not None), None)


def get_model(name: str, data_kind: str) -> ModelEntry:
    """The entry for ``name`` on data of ``data_kind``.

    Raises:
      ValueError: no such name, or the name models the other kind of data.
    """
    _check_kind(data_kind)
    if (name, data_kind) not in _ENTRIES:
        _load_builtin()
    entry = _ENTRIES.get((name, data_kind))
    if entry is not None:
        return entry
    other = [kind for (n, kind) in _ENTRIES if n == name]
    if other:
        what = {"image": "an image flow", "vector": "a vector flow"}[other[0]]
        use = (
            "use it with image data" if other[0] == "image" else "use it with a 2-D toy dataset or a CSV file"
        )
        raise ValueError(f"--model {name} is {what}; {use}, got {data_kind} data.")
    raise ValueError(f"--model: expected one of {', '.join(model_names())}, got {name!r}.")
