"""Every python block of README.md and docs/*.md runs as pasted; the README stays short.

Each block is written to a file of its own and run in a fresh interpreter, from an empty
directory (so ``asgi_ws_close`` is the installed package, not the checkout), with a timeout, as
``runpy.run_path(file, run_name="docs_block")``: a block may start a server under
``if __name__ == "__main__":``, which is then left out. A block preceded by ``<!-- fragment -->``
is not meant to run on its own and is skipped; fragments are the exception (none in the README).

``ASGI_WS_CLOSE_DOCS_PYTHON`` names another interpreter to run the blocks with, e.g. one of a
fresh venv where the package was installed from its built wheel with its extras (``.ci/run``
does that for the README).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
FRAGMENT = "<!-- fragment -->"
#: Seconds a block may take (a fresh interpreter importing FastAPI, Django or Litestar included).
TIMEOUT = 90
MAX_README_LINES = 200
#: Installed only with the docs dependency group: their blocks are skipped without it (the
#: Python 3.10 CI venv has the test group only).
DOCS_GROUP_ONLY = {"quart", "socketio"}

_FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>[\w+-]*)[^\n]*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    fragment: bool

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with whether each is marked a fragment."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent = len(opening["indent"])
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:])
            i += 1
        previous = next((line.strip() for line in reversed(lines[:start]) if line.strip()), "")
        found.append(Block(path, start + 1, opening["lang"], "\n".join(body) + "\n", previous == FRAGMENT))
        i += 1
    return found


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def python_blocks() -> list[Block]:
    return [block for path in markdown_files() for block in blocks_of(path) if block.lang in ("python", "py")]


def _top_level_modules(code: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module.split(".")[0])
    return modules


def _docs_group_installed() -> bool:
    return importlib.util.find_spec("mkdocs") is not None


BLOCKS = python_blocks()


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.fragment], ids=lambda b: b.name)
def test_the_block_runs(block: Block, tmp_path: Path) -> None:
    python = os.environ.get("ASGI_WS_CLOSE_DOCS_PYTHON", sys.executable)
    if python == sys.executable and not _docs_group_installed():
        missing = sorted(m for m in _top_level_modules(block.code) & DOCS_GROUP_ONLY if not importlib.util.find_spec(m))
        if missing:
            pytest.skip(f"needs {', '.join(missing)} (the docs dependency group)")
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONSTARTUP")}
    try:
        result = subprocess.run(
            [python, "-c", "import runpy, sys; runpy.run_path(sys.argv[1], run_name='docs_block')", str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{block.name} did not finish within {TIMEOUT} s: it must run and exit") from exc
    assert result.returncode == 0, (
        f"{block.name} failed (exit code {result.returncode}):\n{block.code}\n--- stdout\n{result.stdout}"
        f"\n--- stderr\n{result.stderr}"
    )


def test_the_blocks_are_found() -> None:
    # The parser sees the blocks: the README's and every page's (a page without one is fine).
    readme = [b for b in BLOCKS if b.path == README]
    assert readme, "README.md has no python block"
    assert {b.path for b in BLOCKS} >= {README, DOCS / "getting-started.md", DOCS / "frameworks.md"}


def test_fragments_are_the_exception() -> None:
    fragments = [b.name for b in BLOCKS if b.fragment]
    assert not [b for b in BLOCKS if b.fragment and b.path == README], "every README block must run as pasted"
    assert len(fragments) * 5 <= len(BLOCKS), f"too many fragments: {fragments}"


def test_the_readme_is_at_most_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"


def test_the_readme_opens_with_prose() -> None:
    # A plain-prose pitch before any code: the title, then text, then the first fence.
    text = README.read_text(encoding="utf-8")
    first_fence = text.index("```")
    prose = [line for line in text[:first_fence].splitlines()[1:] if line.strip() and not line.startswith("#")]
    assert len(" ".join(prose).split()) >= 30, "the README must open with a pitch in prose"


def test_the_readme_keeps_the_ci_test_command() -> None:
    readme = README.read_text(encoding="utf-8")
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = 'python -m pytest -n 2 -m "not autobahn"'
    assert command in readme and '"$PY" -m pytest -n 2 -m "not autobahn"' in ci
    assert "python -m examples.demo" in readme


#: Modules whose docstrings are Markdown (the API reference renders them; so does help()).
MARKDOWN_MODULES = ("__init__", "exceptions", "fastapi", "litestar", "starlette", "testing")
_SPHINX = re.compile(r":(?:class|func|meth|exc|attr|data|mod|obj|ref):`|(?<!`)``(?!`)|::\n")


@pytest.mark.parametrize("module", MARKDOWN_MODULES)
def test_docstrings_are_markdown(module: str) -> None:
    tree = ast.parse((REPO_ROOT / "asgi_ws_close" / f"{module}.py").read_text(encoding="utf-8"))
    docstrings = [
        ast.get_docstring(node, clean=False) or ""
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    found = [match for doc in docstrings for match in _SPHINX.findall(doc)]
    assert not found, f"asgi_ws_close/{module}.py: Sphinx markup in docstrings: {found}"


def test_the_parser_marks_fragments(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nprint(1)\n```\n\n<!-- fragment -->\n\n```python\napp.add_middleware(X)\n```\n"
        "\n- item:\n\n  ```py\n  print(2)\n  ```\n\n```bash\nls\n```\n",
        encoding="utf-8",
    )
    found = blocks_of(page)
    assert [(b.lang, b.code, b.fragment) for b in found] == [
        ("python", "print(1)\n", False),
        ("python", "app.add_middleware(X)\n", True),
        ("py", "print(2)\n", False),
        ("bash", "ls\n", False),
    ]
