"""Every framework app under uvicorn (``framework_server``): a client's close, the app's close
and a lost transport reach the handlers and the ``on_close`` hook with the same record, and each
framework's example script runs as its docs say.

The framework-specific reads (what the handler saw: Starlette's ``close_code``, FastAPI's
dependencies...) are the ``handler`` expectations of the tables below; an empty one checks the
record only.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NamedTuple

import pytest

from tests.support.frameworkapps.clients import app_closes, assert_closed, client_closes, client_drops
from tests.support.frameworkapps.server import Server, run_uvicorn

pytestmark = pytest.mark.server

BOTH = ("handler", "on_close")

# (framework, path, what the handler saw) for a client's close 4001 "bye".
CLIENT_CLOSES = [
    ("channels", "/ws/async/", {"close_code": 4001}),
    ("channels", "/ws/sync/", {"close_code": 4001}),
    ("fastapi", "/ws", {}),
    ("fastapi", "/router/ws", {"token": "ok"}),
    ("fastapi", "/sub/ws", {"root_path": "/sub"}),
    ("litestar", "/ws", {}),
    ("litestar", "/listener", {}),
    ("starlette", "/endpoint", {"close_code": 4001}),
    ("starlette", "/mounted/endpoint", {"close_code": 4001}),
    ("starlette", "/docs", {"exc_code": 4001, "exc_reason": "bye"}),
    ("starlette", "/iter", {}),
]

# (framework, path, the sources that report, what the handler saw) for the app's close 4003 "nope".
APP_CLOSES = [
    ("channels", "/ws/async/", BOTH, {}),
    ("channels", "/ws/sync/", BOTH, {}),
    ("fastapi", "/ws", BOTH, {}),
    ("fastapi", "/router/ws", BOTH, {}),
    ("fastapi", "/sub/ws", BOTH, {}),
    ("litestar", "/ws", BOTH, {}),
    # uvicorn answers the app's close with a disconnect that echoes it.
    ("starlette", "/endpoint", BOTH, {"close_code": 4003}),
    ("starlette", "/mounted/endpoint", BOTH, {"close_code": 4003}),
    ("starlette", "/docs", BOTH, {}),
    # The iterator ends with the app's close: the handler prints nothing after it.
    ("starlette", "/iter", ("on_close",), {}),
]

# (framework, path, what the handler saw) for a TCP connection that ends without a close frame.
TRANSPORT_LOST = [
    ("channels", "/ws/async/", {}),
    ("fastapi", "/ws", {}),
    ("litestar", "/listener", {}),
    # uvicorn (websockets-sansio) reports a lost transport as 1005: Starlette passes it on.
    ("starlette", "/endpoint", {"close_code": 1005}),
]


class Example(NamedTuple):
    script: str
    path: str
    #: The log line that carries the record, up to the JSON.
    marker: str
    #: What the example's own handler logs about the close.
    saw: str


CLOSED_BY_CLIENT = "closed by client: 4001 (private use) bye, clean"
EXAMPLES = {
    "channels": Example("channels_app.py", "/ws/echo/", "closed /ws/echo/ ", f"consumer saw: {CLOSED_BY_CLIENT}"),
    "fastapi": Example("fastapi_dep.py", "/ws?token=secret", "closed /ws ", f"handler saw: {CLOSED_BY_CLIENT}"),
    "litestar": Example("litestar_app.py", "/ws", "closed /ws ", f"handler saw: {CLOSED_BY_CLIENT}"),
    "starlette": Example("starlette_endpoint.py", "/ws", "closed /ws ", "handler saw: 4001 by client, reason 'bye'"),
}


def assert_handler_saw(server: Server, tag: str, expected: dict[str, Any]) -> None:
    if not expected:
        return  # the record only (checked by the caller)
    handler = server.observed(tag, "handler")
    assert {key: handler[key] for key in expected} == expected, handler


@pytest.mark.parametrize(("framework_server", "path", "handler"), CLIENT_CLOSES, indirect=["framework_server"])
def test_server_client_close(framework_server: Server, path: str, handler: dict[str, Any]) -> None:
    tag = f"client-close{path}"
    client_closes(framework_server, path, tag)
    for source in BOTH:
        record = framework_server.observed(tag, source)["record"]
        assert_closed(record, initiator="client", code=4001, reason="bye", clean=True)
    assert_handler_saw(framework_server, tag, handler)


@pytest.mark.parametrize(("framework_server", "path", "sources", "handler"), APP_CLOSES, indirect=["framework_server"])
def test_server_app_close(
    framework_server: Server, path: str, sources: tuple[str, ...], handler: dict[str, Any]
) -> None:
    tag = f"app-close{path}"
    assert app_closes(framework_server, path, tag) == (4003, "nope")
    for source in sources:
        record = framework_server.observed(tag, source)["record"]
        assert_closed(record, initiator="app", code=4003, reason="nope", clean=True)
    assert_handler_saw(framework_server, tag, handler)


@pytest.mark.parametrize(("framework_server", "path", "handler"), TRANSPORT_LOST, indirect=["framework_server"])
def test_server_transport_lost(framework_server: Server, path: str, handler: dict[str, Any]) -> None:
    # What no in-process client can produce: the TCP connection ends without a close frame.
    client_drops(framework_server, path, "drop")
    for source in BOTH:
        record = framework_server.observed("drop", source)["record"]
        assert_closed(record, initiator=None, code=1006, reason="", clean=False)
    assert_handler_saw(framework_server, "drop", handler)


@pytest.mark.parametrize("framework", EXAMPLES)
def test_example_runs_under_uvicorn(framework: str) -> None:
    example = EXAMPLES[framework]
    with run_uvicorn([sys.executable, f"examples/frameworks/{example.script}"], env={"PORT": "0"}) as server:
        client_closes(server, example.path, "example")
        line = server.wait_for_log(example.marker)
        server.wait_for_log(example.saw)
    record = json.loads(line.split(example.marker, 1)[1])
    assert_closed(record, initiator="client", code=4001, reason="bye", clean=True)
