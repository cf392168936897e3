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
    (
        "training/step.py",
        "keras.src.trainers",
    ): "Keras's monitors read a metric's direction only inside its metric containers "
    "(MetricsList); no public container exists.",
    (
        "training/step.py",
        "tf.__internal__",
    ): "maybe_merge_call restores mirrored variables in the cross-replica context, as Keras's "
    "own optimizers do, and strategy_supports_no_merge_call says whether a cond may hold the "
    "optimizer's all-reduce, as LossScaleOptimizer asks; TensorFlow has no public form of either.",
    (
        "backup.py",
        "self.model._initial_epoch",
    ): "the epoch a resumed fit starts from: Keras's fit reads it only there, and its own "
    "BackupAndRestore callback sets it the same way (no public seam for a callback).",
    (
        "reversible.py",
        "tensorflow.python.eager.record",
    ): "stop_recording: tf.custom_gradient leaves an eager tape recording inside the function "
    "(it would keep every activation alive); tf.recompute_grad uses the same context manager.",
    (
        "distributed/cluster.py",
        "tensorflow.python.eager",
    ): "context().wait_at_barrier: the coordination service's barrier has no public tf.* name.",
    (
        "distributed/cluster.py",
        "os._exit",
    ): "ending a multi-worker process at once after a fatal error: a normal exit waits for "
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


def _is_private(name: str) -> bool:
    return (
        name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
    ) or name == "__internal__"


class _Walk(ast.NodeVisitor):
    """Collects private uses; a class's own name counts as itself inside its body."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []
        self.classes: list[str] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.classes.append(node.name)
        self.generic_visit(node)
        self.classes.pop()

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module.startswith(("keras.src", "tensorflow.python")) or any(
            _is_private(p) for p in module.split(".")
        ):
            self.found.append((node.lineno, module))
        for alias in node.names:
            if _is_private(alias.name):
                self.found.append((node.lineno, f"{module}.{alias.name}"))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.startswith(("keras.src", "tensorflow.python")):
                self.found.append((node.lineno, alias.name))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        owner = node.value
        own = (isinstance(owner, ast.Name) and (owner.id in SELF_NAMES or owner.id in self.classes)) or (
            isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super"
        )
        if _is_private(node.attr) and not own:
            self.found.append((node.lineno, _dotted(node) or f"<expr>.{node.attr}"))
        self.generic_visit(node)


def private_uses(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, what) for each use of another object's or module's private member in ``path``."""
    walk = _Walk()
    walk.visit(ast.parse(path.read_text(), str(path)))
    return walk.found


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
    sample.write_text(
        "from a.b import _hidden\nimport keras\n"
        "class A:\n    def f(self, other):\n        self._mine = other._theirs\n"
        "        super()._validate()\n        return keras.src\n"
    )
    assert [w for _, w in private_uses(sample)] == ["a.b._hidden", "other._theirs"]
    sample.write_text(
        "class B:\n    @staticmethod\n    def f():\n        return B._g()\n"
        "def h():\n    return B._g() + tf.__internal__.x\n"
    )
    assert [w for _, w in private_uses(sample)] == ["B._g", "tf.__internal__"]


@pytest.mark.parametrize("limit", [500])
def test_no_file_is_over_the_size_limit(limit):
    sizes = {
        p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert {k: v for k, v in sizes.items() if v > limit} == {}


def test_flow_model_keeps_to_its_job():
    from tfflows.models.base import FlowModel

    source = (PACKAGE / "models" / "base.py").read_text()
    start = source.index("class FlowModel(")
    assert len(source[start:].splitlines()) < 400, "FlowModel is over 400 lines"
    assert FlowModel.train_log_prob is not None
