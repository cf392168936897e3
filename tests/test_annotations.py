"""Every public function and method of tfflows is fully annotated.

Public means: a module-level function whose name has no leading underscore, or
a method of a module-level class whose name has none (special methods such as
``__init__`` and ``__call__`` included: their signatures are the class's; a
method with a leading underscore is not public). Fully annotated means every
parameter but ``self``/``cls`` has an annotation, ``*args`` and ``**kwargs``
included, and so does the return. Keras overrides (``call``, ``get_config``,
``build``, ``on_epoch_end``, ...) are public methods too.
"""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tfflows"

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def _is_public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def _missing(function: FunctionNode, is_method: bool) -> list[str]:
    """The names of ``function``'s parameters without an annotation, and ``return`` if it has none."""
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.decorator_list)
    if is_method and not is_static and positional and positional[0].arg in {"self", "cls"}:
        positional = positional[1:]
    missing = [a.arg for a in [*positional, *args.kwonlyargs] if a.annotation is None]
    if args.vararg is not None and args.vararg.annotation is None:
        missing.append("*" + args.vararg.arg)
    if args.kwarg is not None and args.kwarg.annotation is None:
        missing.append("**" + args.kwarg.arg)
    if function.returns is None:
        missing.append("return")
    return missing


def public_functions(tree: ast.Module) -> list[tuple[str, FunctionNode, bool]]:
    """(qualified name, node, is a method) for each public function and method of a module."""
    found: list[tuple[str, FunctionNode, bool]] = []

    def walk_class(cls: ast.ClassDef, prefix: str) -> None:
        for node in cls.body:
            if isinstance(node, FunctionNode) and _is_public(node.name):
                found.append((f"{prefix}{cls.name}.{node.name}", node, True))
            elif isinstance(node, ast.ClassDef) and _is_public(node.name):
                walk_class(node, f"{prefix}{cls.name}.")

    for node in tree.body:
        if isinstance(node, FunctionNode) and not node.name.startswith("_"):
            found.append((node.name, node, False))
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            walk_class(node, "")
    return found


def unannotated() -> tuple[list[str], int]:
    """``file:line name (missing ...)`` for each public function missing an annotation; and the total."""
    problems, total = [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node, is_method in public_functions(tree):
            total += 1
            missing = _missing(node, is_method)
            if missing:
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                problems.append(f"{where} {name} (missing: {', '.join(missing)})")
    return problems, total


def test_checker_finds_missing_annotations() -> None:
    source = (
        "def f(x, *args: int, y: int = 1, **kwargs) -> None: ...\n"
        "def _private(x): ...\n"
        "class Public:\n"
        "    def __init__(self, a: int): ...\n"
        "    def call(self, x: int) -> int: ...\n"
        "    @staticmethod\n"
        "    def make(self_like): ...\n"
        "    def _hidden(self, x): ...\n"
        "class _Private:\n"
        "    def call(self, x): ...\n"
    )
    found = {name: _missing(node, is_method) for name, node, is_method in public_functions(ast.parse(source))}
    assert found == {
        "f": ["x", "**kwargs"],
        "Public.__init__": ["return"],
        "Public.call": [],
        "Public.make": ["self_like", "return"],
    }


def test_public_functions_are_annotated() -> None:
    problems, total = unannotated()
    assert total > 300, f"the walk found only {total} public functions: is PACKAGE right?"
    assert not problems, (
        f"{len(problems)} of {total} public functions and methods lack an annotation:\n" + "\n".join(problems)
    )
