"""Real servers: uvicorn announcing ASGI spec 2.5 changes no record.

A proposed uvicorn change announces ``{"version": "3.0", "spec_version": "2.5"}`` on WebSocket
scopes and puts a ``reason`` key (``""`` when there is none) in every ``websocket.disconnect``.
``tests/support/uvicorn_spec25.py`` patches uvicorn that way in the server process (the
``uvicorn-<impl>-spec25`` servers of ``tests/support/servers.py``). For each of uvicorn's three
WebSocket implementations, the Starlette app of ``tests/support/serverapp.py`` runs the connection
scenarios of :data:`SCENARIO_NAMES` (client closes with a code and reason, with a code only,
with no status; TCP FIN and RST drops; an app close) on plain uvicorn and on the patched one:

* the patch took effect: every scope of the patched run says spec 2.5 (the plain run's say
  2.4), and every ``websocket.disconnect`` the app got has a ``reason`` key and is otherwise
  the plain run's message;
* what the context and the handler say, and what the client saw, are the same in both runs.

The two runs of an implementation are measured once per test process and shared by the two
tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.matrix.scenarios import APPS, SCENARIOS_BY_NAME, cell_diffs, run_connection_scenarios
from tests.support.servers import read_records
from tests.support.uvicorn_spec25 import SPEC_VERSION

pytestmark = pytest.mark.server

SCENARIO_NAMES = (
    "client-close-4001",
    "client-close-1000",
    "client-close-empty",
    "drop-fin",
    "drop-rst",
    "app-close-answered",
)
SCENARIOS = tuple(SCENARIOS_BY_NAME[name] for name in SCENARIO_NAMES)
IMPLS = ("websockets", "websockets-sansio", "wsproto")
APP = APPS["starlette"]


class Run:
    """One server run: its cells, and the handler lines its app wrote, by scenario."""

    def __init__(self, server: str, records: Path) -> None:
        self.server = server
        self.cells = run_connection_scenarios(server, APP, records, SCENARIOS)
        self.handler_lines = {
            name: [
                line
                for line in read_records(records)
                if line["source"] == "handler" and line["id"].startswith(f"{name}-")
            ]
            for name in SCENARIO_NAMES
        }


_runs: dict[str, tuple[Run, Run]] = {}


def _runs_of(impl: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Run]:
    if impl not in _runs:
        plain = Run(f"uvicorn-{impl}", tmp_path_factory.mktemp(f"plain-{impl}") / "records.jsonl")
        patched = Run(f"uvicorn-{impl}-spec25", tmp_path_factory.mktemp(f"spec25-{impl}") / "records.jsonl")
        _runs[impl] = (plain, patched)
    return _runs[impl]


def _with_reason(app: Any) -> Any:
    # What the patch makes of the plain run's app outcome: a reason key on a disconnect.
    if isinstance(app, dict) and isinstance(app.get("disconnect"), dict):
        return {**app, "disconnect": {"reason": "", **app["disconnect"]}}
    return app


@pytest.mark.parametrize("impl", IMPLS)
def test_the_patch_takes_effect(impl: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    plain, patched = _runs_of(impl, tmp_path_factory)
    problems = []
    for name in SCENARIO_NAMES:
        for run, spec in ((plain, "2.4"), (patched, SPEC_VERSION)):
            lines = run.handler_lines[name]
            if len(lines) != 1:
                problems.append(f"{name} on {run.server}: expected one handler line, got {lines!r}")
                continue
            asgi = lines[0].get("asgi")
            if asgi != {"version": "3.0", "spec_version": spec}:
                problems.append(f"{name} on {run.server}: scope['asgi'] is {asgi!r}, expected spec {spec}")
        got, plain_app = patched.cells[name]["app"], plain.cells[name]["app"]
        if not (isinstance(got, dict) and "reason" in got.get("disconnect", {})):
            problems.append(f"{name} on {patched.server}: the app's disconnect has no reason key: {got!r}")
        if got != _with_reason(plain_app):
            problems.append(
                f"{name}: the app got {got!r} on {patched.server}, {plain_app!r} on {plain.server}: "
                "expected the same message with a reason key added"
            )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("impl", IMPLS)
def test_spec25_records_what_plain_uvicorn_records(impl: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    plain, patched = _runs_of(impl, tmp_path_factory)

    def records(run: Run) -> dict[str, Any]:
        # Everything but what the app got (the patch changes that on purpose; checked above).
        return {name: {k: v for k, v in cell.items() if k != "app"} for name, cell in run.cells.items()}

    problems = cell_diffs(records(plain), records(patched), plain.server, patched.server)
    if problems:
        pytest.fail(
            f"{len(problems)} of {len(SCENARIOS)} cell(s) differ between {plain.server} and {patched.server} "
            "(spec 2.5, a reason on every disconnect):\n\n" + "\n\n".join(problems),
            pytrace=False,
        )
