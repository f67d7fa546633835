"""Regenerate the server matrix from a test run: ``python -m tests.matrix.generate``.

Runs ``tests/matrix/test_matrix.py`` (the same scenarios, the same code as the test) with
``ASGI_WS_CLOSE_MATRIX_RECORD`` set, so that each test writes its cells instead of comparing
them; checks that the Starlette and the FastAPI app gave the same cell everywhere; then writes
``tests/matrix/matrix.json`` (the expected matrix the tests compare with), ``matrix.md`` (what
the context says: the block of ``docs/servers.md``) and ``observed.md`` (what the servers and
clients saw), naming the installed server versions.

Options:
    --write-docs     also rewrite docs/servers.md between ``<!-- matrix:start -->`` and
                     ``<!-- matrix:end -->`` with matrix.md.
    --render-only    do not run the tests: re-render the Markdown (and the docs page) from matrix.json.
    --new-python     measure on this interpreter although the committed matrix names another
                     (cells depend on it: hypercorn's shutdown differs between 3.11 and 3.12+).
    -n N             pytest-xdist workers (default 2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.matrix.scenarios import RECORD_ENV, SCENARIOS, apps_for, python_version
from tests.matrix.table import (
    MATRIX_JSON,
    MATRIX_MD,
    OBSERVED_MD,
    PAGE,
    REGENERATE,
    load_matrix,
    render_matrix,
    render_observed,
    replace_page_block,
)
from tests.support.servers import REPO_ROOT, SERVERS, server_versions

__all__ = ["main"]

#: The distributions around the servers that the cells also depend on.
FRAMEWORKS = ("starlette", "fastapi")


def run_tests(record_dir: Path, workers: int) -> None:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/matrix/test_matrix.py",
        "-m",
        "server",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        str(workers),
    ]
    print("$", " ".join(command), file=sys.stderr)
    result = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, RECORD_ENV: str(record_dir)}, check=False)
    if result.returncode != 0:
        raise SystemExit(f"the matrix run failed (exit code {result.returncode}); nothing was written")


def merge(record_dir: Path) -> dict[str, dict[str, Any]]:
    """Every (scenario, server) cell, checked to be the same for every app."""
    by_app: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(record_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for scenario, cell in data["cells"].items():
            by_app.setdefault((scenario, data["server"]), {})[data["app"]] = cell
    cells: dict[str, dict[str, Any]] = {}
    problems = []
    for scenario in SCENARIOS:
        for server in SERVERS:
            per_app = by_app.get((scenario.name, server), {})
            apps = apps_for(scenario)
            if set(per_app) != set(apps):
                problems.append(f"{scenario.name} on {server}: cells only for {sorted(per_app)}")
                continue
            first, *others = per_app.values()
            if any(other != first for other in others):
                problems.append(
                    f"{scenario.name} on {server}: the apps disagree: {json.dumps(per_app, sort_keys=True)}"
                )
                continue
            cells.setdefault(scenario.name, {})[server] = first
    if problems:
        raise SystemExit("cannot make a matrix from this run:\n" + "\n".join(problems))
    return cells


def build(cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "generated_by": f"{REGENERATE} (from a run of tests/matrix/test_matrix.py); do not edit by hand",
        "python": python_version(),
        "versions": {server: server_versions(server) for server in SERVERS},
        "frameworks": {name: metadata.version(name) for name in FRAMEWORKS},
        "servers": list(SERVERS),
        "scenarios": [{"name": scenario.name, "title": scenario.title} for scenario in SCENARIOS],
        "cells": cells,
    }


def write(matrix: dict[str, Any], *, write_docs: bool) -> None:
    MATRIX_JSON.write_text(json.dumps(matrix, indent=2, sort_keys=False, ensure_ascii=False) + "\n", encoding="utf-8")
    MATRIX_MD.write_text(render_matrix(matrix), encoding="utf-8")
    OBSERVED_MD.write_text(render_observed(matrix), encoding="utf-8")
    written = [MATRIX_JSON, MATRIX_MD, OBSERVED_MD]
    if write_docs:
        PAGE.write_text(replace_page_block(PAGE.read_text(encoding="utf-8"), render_matrix(matrix)), "utf-8")
        written.append(PAGE)
    for path in written:
        print("wrote", path.relative_to(REPO_ROOT), file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.matrix.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--write-docs", action="store_true", help="also rewrite the matrix block of docs/servers.md")
    parser.add_argument("--render-only", action="store_true", help="re-render the Markdown from matrix.json")
    parser.add_argument(
        "--new-python", action="store_true", help="measure on this Python even if the matrix names another"
    )
    parser.add_argument("-n", dest="workers", type=int, default=2, help="pytest-xdist workers (default 2)")
    args = parser.parse_args(argv)
    if args.render_only:
        write(load_matrix(), write_docs=args.write_docs)
        return
    if MATRIX_JSON.exists() and not args.new_python:
        measured = load_matrix().get("python")
        if measured not in (None, python_version()):
            raise SystemExit(
                f"the committed matrix was measured on {measured} (the Python CI runs the server tier on), "
                f"this is {python_version()}: run the generator with {measured}, or pass --new-python to "
                "measure it on this one instead"
            )
    with tempfile.TemporaryDirectory(prefix="asgi-ws-close-matrix-") as tmp:
        record_dir = Path(tmp)
        run_tests(record_dir, args.workers)
        matrix = build(merge(record_dir))
    write(matrix, write_docs=args.write_docs)


if __name__ == "__main__":
    main()
