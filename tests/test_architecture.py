"""The package's shape: no module reaches into another object's private members; files stay small.

A module talks to another through public names. The walk below finds every
``obj._name`` whose ``obj`` is not ``self``, ``cls`` or ``super()``, and every
``from module import _name`` across modules; what remains are uses of a
framework's private API that no public one replaces, each listed in
``FRAMEWORK_PRIVATE`` with its reason.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tfflows"

FRAMEWORK_PRIVATE: dict[tuple[str, str], str] = {
    ("training/step.py", "keras.src.trainers.compile_utils"):
        "Keras's monitors read a metric's direction only inside its metric containers "
        "(MetricsList); no public container exists.",
    ("training/step.py", "tf.__internal__.distribute.interim.maybe_merge_call"):
        "restoring mirrored variables in the cross-replica context, as Keras's own optimizers "
        "do; TensorFlow has no public form of it.",
    ("training/step.py", "tf.__internal__.distribute.strategy_supports_no_merge_call"):
        "whether a cond may hold the optimizer's all-reduce; as LossScaleOptimizer asks.",
    ("distributed.py", "os._exit"):
        "ending a multi-worker process at once after a fatal error: a normal exit waits for "
        "collective ops that never finish (documented in the function).",
}
"""(file, the private name used) → why no public API serves."""

SELF_NAMES = {"self", "cls"}


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def private_uses(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, what) for each use of another object's or module's private member in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("keras.src") or any(p.startswith("_") and not p.startswith("__")
                                                          for p in node.module.split(".")):
                found.append((node.lineno, node.module))
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append((node.lineno, f"{node.module}.{alias.name}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras.src"):
                    found.append((node.lineno, alias.name))
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if not attr.startswith("_") or (attr.startswith("__") and attr.endswith("__")):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in SELF_NAMES:
                continue
            if (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name)
                    and owner.func.id == "super"):
                continue
            found.append((node.lineno, _dotted(node) or f"<expr>.{attr}"))
    return found


def test_no_module_uses_another_objects_private_members():
    unexplained, stale = [], set(FRAMEWORK_PRIVATE)
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for line, what in private_uses(path):
            key = next((k for k in FRAMEWORK_PRIVATE if k[0] == rel and what.startswith(k[1])), None)
            if key is None:
                unexplained.append(f"tfflows/{rel}:{line}: {what}")
            else:
                stale.discard(key)
    assert not unexplained, "private members used across objects:\n" + "\n".join(unexplained)
    assert not stale, f"FRAMEWORK_PRIVATE lists uses that are gone: {sorted(stale)}"


def test_the_walk_finds_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from a.b import _hidden\nimport keras\n"
                      "class A:\n    def f(self, other):\n        self._mine = other._theirs\n"
                      "        super()._validate()\n        return keras.src\n")
    assert [w for _, w in private_uses(sample)] == ["a.b._hidden", "other._theirs"]


@pytest.mark.parametrize("limit", [500])
def test_no_file_is_over_the_size_limit(limit):
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v > limit} == {}


def test_flow_model_keeps_to_its_job():
    from tfflows.models.base import FlowModel

    source = (PACKAGE / "models" / "base.py").read_text()
    start = source.index("class FlowModel(")
    assert len(source[start:].splitlines()) < 400, "FlowModel is over 400 lines"
    assert FlowModel.train_log_prob is not None
