"""A griffe extension for the API reference: every public name documented, or the build fails.

Public means: a name in the ``__all__`` of ``tfflows`` or of one of its
first-level modules and subpackages (:func:`public_modules`), and every member
of such a class whose name does not start with an underscore.

For each public object without a docstring of its own the extension

- gives it a one-line docstring pointing at the framework method it overrides,
  when it overrides a Keras, TensorFlow or TensorFlow Probability method that
  is documented there (``build``, ``call``, ``get_config``, ``train_step``,
  callback hooks, a bijector's ``forward``...): the contract is that
  framework's, and so is its documentation;
- gives it the docstring of the tfflows base class method it overrides, if
  that one has a docstring;
- otherwise logs a warning, which ``mkdocs build --strict`` turns into a
  failed build.

It also shows the Sphinx roles of the docstrings (``:class:`...```) as code.
The class hierarchy is read from the imported package (griffe reads source
only, and cannot see Keras' docstrings).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import sys
from pathlib import Path
from typing import Any

import griffe

PACKAGE = "tfflows"

# The checkout being documented comes first, ahead of any installed tfflows.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

_logger = logging.getLogger("mkdocs.plugins.tfflows_public_api")


_SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):`~?([^`]+)`")


def plain_roles(text: str) -> str:
    """Sphinx roles (``:class:`~a.B```) as Markdown code (`` `B` ``), which the site renders."""

    def code(match: re.Match) -> str:
        target = match.group(1)
        return f"`{target.rsplit('.', 1)[-1]}`" if match.group(0).count("~") else f"`{target}`"

    return _SPHINX_ROLE.sub(code, text)


def _rewrite_roles(obj: griffe.Object) -> None:
    if obj.docstring is not None:
        obj.docstring.value = plain_roles(obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias:
            _rewrite_roles(member)


def public_modules(package: griffe.Module) -> list[griffe.Module]:
    """The package and its first-level modules and subpackages whose names are public."""
    return [package] + [m for name, m in sorted(package.modules.items()) if not name.startswith("_")]


def documented_base(cls: type, name: str) -> type | None:
    """The first class after ``cls`` in its MRO that defines ``name`` with a docstring."""
    for base in cls.__mro__[1:]:
        if name not in vars(base):
            continue
        member = vars(base)[name]
        if isinstance(member, property):
            member = member.fget or member
        member = getattr(member, "__func__", member)
        if (getattr(member, "__doc__", None) or "").strip():
            return base
    return None


def is_framework(cls: type) -> bool:
    """True for a class of Keras, TensorFlow or TensorFlow Probability (not ours)."""
    return cls.__module__.split(".")[0] in ("keras", "tensorflow", "tensorflow_probability", "tf_keras")


# Keras hooks that Keras itself leaves without a docstring (its guides document
# them): an override without one of its own points there.
KERAS_HOOKS = {
    "build": "keras.layers.Layer.build",
    "call": "keras.layers.Layer.call",
    "compute_output_spec": "keras.layers.Layer.compute_output_spec",
    "convolution_op": "keras.layers.Conv2D.convolution_op",
}


def _runtime(obj: griffe.Object) -> Any:
    module = importlib.import_module(obj.module.path)
    return getattr(module, obj.name)


def _docstring_of(member: Any) -> str:
    member = getattr(member, "fget", None) or getattr(member, "__func__", member)
    return inspect.cleandoc(member.__doc__)


def _overrides(cls: type, qualified: str) -> bool:
    """True when ``cls`` subclasses the Keras class of ``qualified`` (``keras.X.Y.method``)."""
    import keras

    owner: Any = keras
    for part in qualified.split(".")[1:-1]:
        owner = getattr(owner, part)
    return issubclass(cls, owner)


class PublicAPI(griffe.Extension):
    """Fails the build on an undocumented public name; documents framework overrides."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Checks every public module of ``tfflows`` once griffe has loaded the package."""
        if pkg.name != PACKAGE:
            return
        _rewrite_roles(pkg)
        seen: set[str] = set()
        for module in public_modules(pkg):
            if not module.docstring:
                _logger.warning("%s: module without a docstring", module.path)
            for name in module.exports or ():
                if not isinstance(name, str) or name.startswith("__"):
                    continue
                member = module.get_member(name)
                if member.is_alias:
                    try:
                        member = member.final_target
                    except griffe.AliasResolutionError:  # another package's name (keras.Model): its docs
                        continue
                if member.path in seen or member.is_module:
                    continue
                seen.add(member.path)
                if not member.docstring:
                    _logger.warning(
                        "%s.%s: public name without a docstring (%s)", module.path, name, member.path
                    )
                if member.is_class:
                    self._check_class(member)

    def _check_class(self, cls: griffe.Class) -> None:
        runtime = None
        for name, member in list(cls.members.items()):
            if name.startswith("_") or member.is_alias or member.docstring:
                continue
            if "instance-attribute" in member.labels:
                # State set in __init__ (sub-layers, stored arguments): the class's
                # Args document the arguments; the rest is not API.
                del cls.members[name]
                continue
            if runtime is None:
                runtime = _runtime(cls)
            base = documented_base(runtime, name)
            if base is not None and is_framework(base):
                member.docstring = griffe.Docstring(
                    f"Overrides `{base.__module__}.{base.__qualname__}.{name}`; see its documentation there.",
                    parent=member,
                )
            elif base is not None:
                # Our own base documents the method: the override inherits its docstring.
                member.docstring = griffe.Docstring(_docstring_of(vars(base)[name]), parent=member)
            elif name in KERAS_HOOKS and _overrides(runtime, KERAS_HOOKS[name]):
                member.docstring = griffe.Docstring(
                    f"Keras hook `{KERAS_HOOKS[name]}`, overridden; Keras' guides document it.", parent=member
                )
            else:
                _logger.warning("%s.%s: public member without a docstring", cls.path, name)
