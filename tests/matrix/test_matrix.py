"""The server matrix: every scenario on six real servers, compared with the committed matrix.

For each (server, app), one server process runs every connection scenario in order
(``tests/matrix/scenarios.py``); the rows that need the server launched with a profile (its
keepalive ping on, its HTTP/2) and each shutdown scenario get a server of their own. Every cell
(what the context says, what the server handed the app, what the client saw) must equal the
one in ``tests/matrix/matrix.json``, for the Starlette app and for the FastAPI app alike
(profile and shutdown rows: the Starlette app). On a
difference the test prints a diff per cell and the command that regenerates the matrix from a
test run: ``python -m tests.matrix.generate`` (then review ``git diff tests/matrix``).

With ``ASGI_WS_CLOSE_MATRIX_RECORD=<dir>`` set (the generator sets it), the same tests write
their cells to ``<dir>`` instead of comparing them; the invariants are checked either way.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.matrix.scenarios import (
    APPS,
    PROFILE_APPS,
    PROFILE_SCENARIOS,
    RECORD_ENV,
    SCENARIOS,
    SHUTDOWN_APPS,
    SHUTDOWN_SCENARIOS,
    Scenario,
    comparable,
    python_version,
    run_connection_scenarios,
    run_in_own_server,
    run_shutdown,
)
from tests.matrix.table import (
    MATRIX_MD,
    OBSERVED_MD,
    PAGE,
    PAGE_END,
    PAGE_START,
    REGENERATE,
    load_matrix,
    page_block,
    render_matrix,
    render_observed,
    replace_page_block,
)
from tests.support.servers import SERVERS, server_versions

PAIRS = [(server, app) for server in SERVERS for app in APPS]
SHUTDOWN_PAIRS = [(server, app) for server in SERVERS for app in SHUTDOWN_APPS]
PROFILE_PAIRS = [(server, app) for server in SERVERS for app in PROFILE_APPS]


def _dump(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def check_environment(server: str) -> None:
    """Before a server test: skip it on an interpreter other than the one the matrix was
    measured with; fail it at once if the server's installed versions are not the measured ones."""
    if os.environ.get(RECORD_ENV):
        return
    matrix = load_matrix()
    measured = matrix["python"]
    if measured != python_version():
        pytest.skip(
            f"the matrix was measured on {measured} and servers behave differently on other versions "
            f"(hypercorn's shutdown); this is {python_version()}: run the server tier on {measured}"
        )
    installed = server_versions(server)
    assert matrix["versions"][server] == installed, (
        f"{server}: the matrix was measured with {matrix['versions'][server]}, installed is {installed}; "
        f"install the pinned versions (pyproject.toml, dependency group 'servers'), or regenerate: {REGENERATE}"
    )


def check_cells(server: str, app: str, cells: dict[str, Any], tag: str) -> None:
    """Record ``cells`` (generator run) or compare them with the committed matrix."""
    record_dir = os.environ.get(RECORD_ENV)
    if record_dir:
        out = Path(record_dir) / f"{server}--{app}--{tag}.json"
        out.write_text(json.dumps({"server": server, "app": app, "cells": cells}, sort_keys=True), encoding="utf-8")
        return
    matrix = load_matrix()
    problems = []
    for name, cell in cells.items():
        want = matrix["cells"].get(name, {}).get(server)
        if want is not None and "race" in cell:
            # A raced shutdown: which record each connection got varies; what every run shares
            # (on_close for every connection, what the client saw) is compared.
            want, cell = comparable(want), comparable(cell)
        if cell != want:
            diff = difflib.unified_diff(_dump(want), _dump(cell), "matrix.json", "this run", lineterm="", n=2)
            problems.append(f"--- {name} on {server} ({app}):\n" + "\n".join(diff))
    if problems:
        pytest.fail(
            f"{len(problems)} cell(s) differ from tests/matrix/matrix.json:\n\n"
            + "\n\n".join(problems)
            + f"\n\nIf the new behaviour is intended, regenerate the matrix from a test run: {REGENERATE}",
            pytrace=False,
        )


@pytest.mark.server
@pytest.mark.parametrize(("server", "app"), PAIRS, ids=[f"{server}-{app}" for server, app in PAIRS])
def test_connection_scenarios(server: str, app: str, tmp_path: Path) -> None:
    check_environment(server)
    cells = run_connection_scenarios(server, APPS[app], tmp_path / "records.jsonl")
    check_cells(server, app, cells, "connections")


@pytest.mark.server
@pytest.mark.parametrize("scenario", PROFILE_SCENARIOS, ids=[s.name for s in PROFILE_SCENARIOS])
@pytest.mark.parametrize(("server", "app"), PROFILE_PAIRS, ids=[f"{server}-{app}" for server, app in PROFILE_PAIRS])
def test_profile_rows(server: str, app: str, scenario: Scenario, tmp_path: Path) -> None:
    check_environment(server)
    cell = run_in_own_server(server, APPS[app], tmp_path / "records.jsonl", scenario)
    check_cells(server, app, {scenario.name: cell}, scenario.name)


@pytest.mark.server
@pytest.mark.parametrize("scenario", SHUTDOWN_SCENARIOS, ids=[s.name for s in SHUTDOWN_SCENARIOS])
@pytest.mark.parametrize(("server", "app"), SHUTDOWN_PAIRS, ids=[f"{server}-{app}" for server, app in SHUTDOWN_PAIRS])
def test_shutdown(server: str, app: str, scenario: Scenario, tmp_path: Path) -> None:
    check_environment(server)
    cell = run_shutdown(server, APPS[app], tmp_path, scenario, need_context=bool(os.environ.get(RECORD_ENV)))
    check_cells(server, app, {scenario.name: cell}, scenario.name)


# The committed files agree with each other (no server needed).


def test_matrix_has_every_cell() -> None:
    matrix = load_matrix()
    assert matrix["servers"] == list(SERVERS)
    assert [s["name"] for s in matrix["scenarios"]] == [s.name for s in SCENARIOS]
    assert [s["title"] for s in matrix["scenarios"]] == [s.title for s in SCENARIOS], REGENERATE
    for scenario in SCENARIOS:
        assert set(matrix["cells"][scenario.name]) == set(SERVERS), scenario.name
    assert {s.name for s in SCENARIOS} == set(matrix["cells"])
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS), "two rows share a name"


def test_markdown_is_generated_from_the_matrix() -> None:
    matrix = load_matrix()
    assert MATRIX_MD.read_text(encoding="utf-8") == render_matrix(matrix), f"matrix.md is stale: {REGENERATE}"
    assert OBSERVED_MD.read_text(encoding="utf-8") == render_observed(matrix), f"observed.md is stale: {REGENERATE}"


def test_the_docs_show_the_matrix() -> None:
    block = page_block(PAGE.read_text(encoding="utf-8"))
    assert block is not None, "docs/servers.md has no <!-- matrix:start --> ... <!-- matrix:end --> block"
    assert block == MATRIX_MD.read_text(encoding="utf-8").strip("\n"), (
        f"the matrix block of docs/servers.md differs from tests/matrix/matrix.md: {REGENERATE} --write-docs"
    )


def test_the_page_block_is_replaced_between_the_markers() -> None:
    page = f"intro\n{PAGE_START}\nold table\n{PAGE_END}\noutro\n"
    new = replace_page_block(page, "new table\n")
    assert new == f"intro\n{PAGE_START}\nnew table\n{PAGE_END}\noutro\n"
    assert page_block(new) == "new table"
    with pytest.raises(ValueError, match="no <!-- matrix:start -->"):
        replace_page_block("no markers", "table")
