"""The documentation site: every code block runs, every claim is checked, the build is strict.

Each page's ```python blocks (and the README's) run in order in one
namespace, with a fresh temporary folder as the working directory
(``saved_models`` and ``examples`` linked in). A block followed by a ```text
block must print that text (doctest's rules: ``...`` matches anything,
whitespace is normalized); other claims are ``assert`` lines in the blocks
themselves. A block after a ``<!-- slow -->`` line (or ``<!-- slow: why -->``)
trains beyond a few steps or takes long: it runs only in the page's slow
test, which runs every block of the page, while the page's fast test runs the
others (so fast blocks must not need slow ones). A block after
``<!-- process -->`` runs alone in its own process (and is slow).

The API reference: every public module has a page, every public name and
method a docstring (the rule of ``docs/_ext/public_api.py``, which the strict
build applies too), and a broken reference fails ``mkdocs build --strict``.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib.util
import io
import json
import logging
import os
import pkgutil
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
README = "../README.md"  # the README's example runs like a page's
SLOW_MARK = "<!-- slow -->"
PROCESS_MARK = "<!-- process -->"
"""A block after this line runs alone in a fresh Python process (and is slow). Its
environment holds a ``TF_CONFIG`` for a one-worker cluster on a free local port, so a
multi-worker script runs as it would on each machine, as a cluster of one."""

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass
class Block:
    page: str
    line: int
    code: str
    expected: str | None  # the ```text block that follows, if any
    slow: bool
    process: bool = False


def blocks_of(page: str) -> list[Block]:
    """The ```python blocks of a page, each with the ```text block that follows it."""
    return blocks_in((DOCS / page).read_text(encoding="utf-8"), page)


def blocks_in(text: str, page: str) -> list[Block]:
    """The ```python blocks of a page's text (see :func:`blocks_of`)."""
    fences = list(_FENCE.finditer(text))
    found = []
    for i, fence in enumerate(fences):
        if fence.group(1) != "python":
            continue
        before = text[: fence.start()].rstrip().splitlines()
        mark = before[-1].strip() if before else ""
        # "<!-- slow -->" or "<!-- slow: why -->" (and the same for process)
        process = mark.startswith(PROCESS_MARK[:-4])
        slow = process or mark.startswith(SLOW_MARK[:-4])
        expected = None
        if (
            i + 1 < len(fences)
            and fences[i + 1].group(1) == "text"
            and not text[fence.end() : fences[i + 1].start()].strip()
        ):
            expected = fences[i + 1].group(2)
        found.append(
            Block(page, text[: fence.start()].count("\n") + 1, fence.group(2), expected, slow, process)
        )
    return found


CODE_PAGES = [p for p in [*PAGES, README] if blocks_of(p)]
SLOW_PAGES = [p for p in CODE_PAGES if any(b.slow for b in blocks_of(p))]


def _run_here(block: Block, where: str, namespace: dict) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            exec(compile(block.code, where, "exec"), namespace)
        except Exception as error:
            raise AssertionError(
                f"{where} raised {type(error).__name__}: {error}\n--- block ---\n{block.code}"
            ) from error
    return out.getvalue()


def _run(blocks: list[Block], tmp_path: Path, monkeypatch) -> None:
    for name in ("saved_models", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for block in blocks:
        where = f"{block.page}, block at line {block.line}"
        start = time.perf_counter()
        printed = _run_process(block, tmp_path) if block.process else _run_here(block, where, namespace)
        print(f"{where}: {time.perf_counter() - start:.1f} s")
        if block.expected is not None and not checker.check_output(block.expected, printed, flags):
            raise AssertionError(f"{where} printed\n{printed}\nbut the page says\n{block.expected}")


def _run_process(block: Block, folder: Path) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}"]}, "task": {"type": "worker", "index": 0}}
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        TF_CONFIG=json.dumps(tf_config),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    result = subprocess.run(
        [sys.executable, "-c", block.code], cwd=folder, env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{block.page}, block at line {block.line} exited with {result.returncode}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    return result.stdout


# Pages whose fast blocks fit, export or score models for several seconds: their examples run in
# the full suite (the same code as the API they use, which the fast tier's own tests cover).
HEAVY_PAGES = {
    "guides/keras.md",
    "guides/conditional.md",
    "guides/tfp.md",
    "guides/serving.md",
    "guides/ood.md",
}


@pytest.mark.parametrize(
    "page", [pytest.param(p, marks=pytest.mark.slow) if p in HEAVY_PAGES else p for p in CODE_PAGES]
)
def test_page_examples(page, tmp_path, monkeypatch):
    fast = [b for b in blocks_of(page) if not b.slow]
    if not fast:
        pytest.skip("every block of this page is slow")
    _run(fast, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("page", SLOW_PAGES)
def test_page_examples_slow(page, tmp_path, monkeypatch):
    _run(blocks_of(page), tmp_path, monkeypatch)


def test_block_parser_pairs_output_and_marks():
    text = (
        "text\n\n```python\nprint(1)\n```\n\n```text\n1\n```\n\n"
        f"{SLOW_MARK}\n```python\nx = 2\n```\n\n```bash\nls\n```\n"
    )
    first, second = blocks_in(text, "check.md")
    assert (first.code, first.expected, first.slow) == ("print(1)\n", "1\n", False)
    assert (second.code, second.expected, second.slow) == ("x = 2\n", None, True)


def test_a_wrong_claim_fails(tmp_path, monkeypatch):
    with pytest.raises(AssertionError, match="but the page says"):
        _run([Block("p.md", 1, "print(2)\n", "1\n", False)], tmp_path, monkeypatch)


def test_readme_links_resolve():
    """The README's links into the site name files (and headings) that exist."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(((?:docs/)[^)#\s]+)(?:#([^)\s]+))?\)", text)
    assert links, "the README links into docs/"
    for path, anchor in links:
        target = ROOT / path
        assert target.is_file(), f"README links to {path}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"README links to {path}#{anchor}; its headings give {sorted(slugs)}"


# -- the API reference --------------------------------------------------------


def _extension():
    spec = importlib.util.spec_from_file_location("public_api", DOCS / "_ext" / "public_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _public_module_names() -> list[str]:
    import tfflows

    return ["tfflows"] + [
        f"tfflows.{m.name}" for m in pkgutil.iter_modules(tfflows.__path__) if not m.name.startswith("_")
    ]


def test_every_public_module_has_an_api_page():
    pages = {p: (DOCS / p).read_text(encoding="utf-8") for p in PAGES if p.startswith("api/")}
    for name in _public_module_names():
        assert any(re.search(rf"^::: {re.escape(name)}\s*$", text, re.M) for text in pages.values()), (
            f"{name} has no page in docs/api/ with '::: {name}'"
        )


def _griffe_warnings(search_path: Path, caplog) -> list[str]:
    import griffe

    extension = _extension()
    with caplog.at_level(logging.WARNING, logger="mkdocs.plugins.tfflows_public_api"):
        griffe.load(
            "tfflows",
            search_paths=[str(search_path)],
            try_relative_path=False,
            extensions=griffe.load_extensions(extension.PublicAPI()),
        )
    return [r.getMessage() for r in caplog.records if r.name == "mkdocs.plugins.tfflows_public_api"]


def test_every_public_name_and_method_has_a_docstring(caplog):
    # The rule the strict build applies (docs/_ext/public_api.py), run on the package here.
    assert _griffe_warnings(ROOT, caplog) == []


def test_an_undocumented_public_name_is_reported(tmp_path, caplog):
    package = tmp_path / "tfflows"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""A package."""\n__all__ = ["documented", "bare", "LIMIT"]\n'
        'def documented():\n    """Says what it does."""\n'
        "def bare():\n    pass\nLIMIT = 3\n"
    )
    warnings = _griffe_warnings(tmp_path, caplog)
    assert any("tfflows.bare" in w for w in warnings) and any("tfflows.LIMIT" in w for w in warnings)
    assert not any("documented" in w for w in warnings), warnings


def _mkdocs(site: Path, config: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config),
            "--site-dir",
            str(site),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
def test_strict_build_fails_on_a_broken_reference_and_a_missing_docstring(tmp_path):
    """A copy of the site with one broken cross-reference and one docstring removed does not build."""
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copytree(ROOT / "tfflows", copy / "tfflows", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    glossary = copy / "docs" / "glossary.md"
    glossary.write_text(
        glossary.read_text(encoding="utf-8") + "\nSee [the missing page][tfflows.NoSuchThing].\n",
        encoding="utf-8",
    )
    clock = copy / "tfflows" / "clock.py"
    source = clock.read_text(encoding="utf-8")
    doc = re.search(r'(class TrainingClock[^\n]*\n)(    """.*?"""\n)', source, re.S)
    clock.write_text(source.replace(doc.group(0), doc.group(1) + "    pass\n"), encoding="utf-8")

    result = _mkdocs(tmp_path / "site", copy / "mkdocs.yml")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "tfflows.NoSuchThing" in output, output[-3000:]
    assert "tfflows.clock.TrainingClock" in output and "without a docstring" in output, output[-3000:]
