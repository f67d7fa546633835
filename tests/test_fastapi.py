"""asgi_ws_close.fastapi: CloseContextDep in app routes, APIRouters, mounted sub-apps, with
other dependencies; the error without the middleware; under TestClient and under uvicorn."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.testclient import TestClient
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from asgi_ws_close import (
    Close,
    CloseContext,
    ConnectionState,
    MiddlewareNotInstalled,
    WebSocketCloseMiddleware,
    current_close_context,
    get_close_context,
)
from asgi_ws_close.fastapi import CloseContextDep, close_context
from asgi_ws_close.testing import capture_closes
from tests.support.frameworkapps import emit, fastapi_app
from tests.support.frameworkapps.clients import TIMEOUT, assert_closed
from tests.support.frameworkapps.server import Server

# path -> what the handler adds to its line (the other dependency, the mount's root_path)
ROUTES = {
    "/ws": {},
    "/router/ws": {"token": "ok"},
    "/sub/ws": {"root_path": "/sub"},
}


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(fastapi_app.app) as client:
        yield client


def by_source(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["source"]: line for line in lines}


# --- in process, with FastAPI's TestClient -----------------------------------------------


@pytest.mark.parametrize("path", ROUTES)
def test_client_close_reaches_the_dependency(client: TestClient, path: str) -> None:
    with emit.collect() as lines:
        with client.websocket_connect(f"{path}?tag=t") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
            ws.close(4001, "bye")
    seen = by_source(lines)
    assert set(seen) == {"handler", "on_close"}
    for line in seen.values():
        assert_closed(line["record"], initiator="client", code=4001, reason="bye", clean=True)
    handler = seen["handler"]
    assert {key: handler[key] for key in ROUTES[path]} == ROUTES[path]


@pytest.mark.parametrize("path", ROUTES)
def test_app_close_reaches_the_dependency(client: TestClient, path: str) -> None:
    with emit.collect() as lines:
        with client.websocket_connect(f"{path}?tag=t") as ws:
            ws.send_text("close")
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (4003, "nope")
    for line in by_source(lines).values():
        assert_closed(line["record"], initiator="app", code=4003, reason="nope", clean=True)


def test_without_the_middleware_the_error_names_the_fix_and_the_route(client: TestClient) -> None:
    with pytest.raises(MiddlewareNotInstalled) as error, client.websocket_connect("/bare/ws"):
        pass  # pragma: no cover
    message = str(error.value)
    assert "app.add_middleware(WebSocketCloseMiddleware)" in message
    assert "'/bare/ws'" in message
    assert isinstance(error.value, LookupError)


def test_the_dependency_is_the_scope_context() -> None:
    app = FastAPI()
    app.add_middleware(WebSocketCloseMiddleware)
    seen: list[tuple[CloseContext, CloseContext, CloseContext | None, ConnectionState]] = []

    @app.websocket("/ws")
    async def route(websocket: WebSocket, close: CloseContextDep) -> None:
        seen.append((close, get_close_context(websocket), current_close_context(), close.state))
        await websocket.accept()
        await websocket.close()

    with TestClient(app).websocket_connect("/ws") as ws, pytest.raises(WebSocketDisconnect):
        ws.receive_text()
    [(dependency, from_scope, current, state)] = seen
    assert dependency is from_scope is current
    # Resolved before the handler runs: live, not a snapshot.
    assert state is ConnectionState.CONNECTING
    assert dependency.state is ConnectionState.CLOSED


def test_a_mounted_app_with_its_own_middleware_shares_the_context() -> None:
    hooked: list[tuple[str, CloseContext]] = []
    sub = FastAPI()
    sub.add_middleware(WebSocketCloseMiddleware, on_close=lambda context, scope: hooked.append(("sub", context)))
    parent = FastAPI()
    parent.add_middleware(WebSocketCloseMiddleware, on_close=lambda context, scope: hooked.append(("parent", context)))
    parent.mount("/sub", sub)
    dependencies: list[CloseContext] = []

    @sub.websocket("/ws")
    async def route(websocket: WebSocket, close: CloseContextDep) -> None:
        dependencies.append(close)
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            await websocket.receive_text()

    with capture_closes(parent) as closes, TestClient(parent).websocket_connect("/sub/ws") as ws:
        ws.close(4001, "bye")
    # One connection, one context: both hooks, the outer one first, and one record.
    assert [(name, context) for name, context in hooked] == [("parent", dependencies[0]), ("sub", dependencies[0])]
    assert [(record.initiator, record.code) for record in closes] == [("client", 4001)]


def test_in_an_http_route_the_error_says_websocket_only() -> None:
    app = FastAPI()
    app.add_middleware(WebSocketCloseMiddleware)

    @app.get("/http")
    async def route(close: CloseContextDep) -> str:
        raise AssertionError("unreachable")  # pragma: no cover

    with pytest.raises(ValueError, match="only for 'websocket' scopes.*the route at '/http'") as error:
        TestClient(app).get("/http")
    # The middleware is installed: not a MiddlewareNotInstalled.
    assert not isinstance(error.value, MiddlewareNotInstalled)


def test_the_dependency_can_be_overridden_in_tests() -> None:
    # FastAPI's own testing pattern applies: override close_context, not the middleware.
    app = FastAPI()
    reached: list[str] = []

    @app.websocket("/ws")
    async def route(websocket: WebSocket, close: CloseContextDep) -> None:
        reached.append(close)  # type: ignore[arg-type]
        await websocket.accept()
        await websocket.close()

    app.dependency_overrides[close_context] = lambda: "stand-in"
    with TestClient(app).websocket_connect("/ws") as ws, pytest.raises(WebSocketDisconnect):
        ws.receive_text()
    assert reached == ["stand-in"]


def test_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "asgi_ws_close.fastapi")
    with pytest.raises(ImportError, match=r'pip install "asgi-ws-close\[fastapi\]"'):
        importlib.import_module("asgi_ws_close.fastapi")


# --- the example ------------------------------------------------------------------------


def test_example_in_process() -> None:
    from examples.frameworks import fastapi_dep

    with TestClient(fastapi_dep.app) as client, capture_closes(fastapi_dep.app) as closes:
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws?token=bad"):
            pass  # pragma: no cover
        # Refused before accept: the client got HTTP 403, the app's close is in `sent`.
        assert closes.last.sent == Close(4403, "forbidden")
        assert (closes.last.state, closes.last.http_status) == (ConnectionState.REJECTED, 403)
        with client.websocket_connect("/ws?token=secret") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
            ws.close(4001, "bye")
        assert (closes.last.initiator, closes.last.code, closes.last.reason) == ("client", 4001, "bye")


# --- under uvicorn (the rows every framework shares: tests/test_frameworks_uvicorn.py) ----


@pytest.mark.server
@pytest.mark.parametrize("framework_server", ["fastapi"], indirect=True)
def test_server_without_the_middleware(framework_server: Server) -> None:
    server = framework_server
    with pytest.raises(InvalidStatus) as refused:
        connect(server.url("/bare/ws"), open_timeout=TIMEOUT, close_timeout=TIMEOUT)
    assert refused.value.response.status_code == 500
    # The developer sees the fix in the server's log, with the traceback.
    line = server.wait_for_log("MiddlewareNotInstalled: No close context")
    assert "app.add_middleware(WebSocketCloseMiddleware)" in line
    assert "'/bare/ws'" in line
