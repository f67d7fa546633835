"""Real servers: a middleware outside WebSocketCloseMiddleware that wraps ``send`` changes no record.

Tracing and error-reporting middleware (OpenTelemetry, Sentry) hand the app a wrapper around
the server's ``send``, and so does uvicorn's own message logger at ``--log-level trace``:
WebSocketCloseMiddleware then never sees the server's ``send`` (which its server detection
looks at first). For every server of the matrix (``tests/support/servers.py``, ``SERVERS``), the
Starlette app of ``tests/support/serverapp.py`` runs plain and behind each wrapper
(``WRAPPED_SEND_APPS``: a closure, a ``functools.partial``, a bound method of another object),
and on the uvicorn servers also plain at ``--log-level trace`` (the ``trace`` profile); every
cell (``tests/matrix/scenarios.py``: what the context and the handler said, what the app got,
what the client saw) must be the one of the plain run on the same server, measured in the
same test session (not the committed matrix).

The scenarios are a representative subset of the matrix rows (:data:`SCENARIO_NAMES`): a
client close with a code and reason, a TCP drop, an app close, an app that raises, a rejected
handshake, and an app that only sends while the client closes (the disconnect seen through
``send``). The plain run of a server is measured once per test process and shared by its
variants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.matrix.scenarios import APPS, SCENARIOS_BY_NAME, cell_diffs, run_connection_scenarios
from tests.support.serverapp import WRAPPED_SEND_APPS
from tests.support.servers import SERVERS

pytestmark = pytest.mark.server

#: The matrix rows run plain and wrapped, in this order on one server process.
SCENARIO_NAMES = (
    "client-close-4001",
    "drop-fin",
    "app-close-answered",
    "app-raises",
    "reject",
    "unread-disconnect",
)
SCENARIOS = tuple(SCENARIOS_BY_NAME[name] for name in SCENARIO_NAMES)

PLAIN_APP = APPS["starlette"]

#: Each variant: the app the server loads, and the server profile it runs with.
VARIANTS: dict[str, tuple[str, str | None]] = {
    **{f"wrapped-{name}": (app_ref, None) for name, app_ref in WRAPPED_SEND_APPS.items()},
    # uvicorn's MessageLoggerMiddleware wraps send (and receive) in closures at trace level.
    "uvicorn-trace": (PLAIN_APP, "trace"),
}
CASES = [
    (server, variant)
    for server in SERVERS
    for variant in VARIANTS
    if variant != "uvicorn-trace" or server.startswith("uvicorn-")
]

_plain: dict[str, dict[str, Any]] = {}


def _plain_cells(server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if server not in _plain:
        records = tmp_path_factory.mktemp(f"plain-{server}") / "records.jsonl"
        _plain[server] = run_connection_scenarios(server, PLAIN_APP, records, SCENARIOS)
    return _plain[server]


@pytest.mark.parametrize(("server", "variant"), CASES, ids=[f"{server}-{variant}" for server, variant in CASES])
def test_wrapped_send_records_what_the_plain_app_records(
    server: str, variant: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app_ref, profile = VARIANTS[variant]
    wrapped = run_connection_scenarios(server, app_ref, tmp_path / "records.jsonl", SCENARIOS, profile=profile)
    plain = _plain_cells(server, tmp_path_factory)
    problems = cell_diffs(plain, wrapped, f"{server} plain", f"{server} {variant}")
    if problems:
        pytest.fail(
            f"{len(problems)} of {len(SCENARIOS)} cell(s) on {server} differ between the plain app and "
            f"{variant} ({app_ref}{', profile ' + profile if profile else ''}):\n\n" + "\n\n".join(problems),
            pytrace=False,
        )
