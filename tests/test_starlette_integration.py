"""asgi_ws_close.starlette: CloseAwareEndpoint and plain routes reach the whole context, and
the WebSocketDisconnect patterns of Starlette's docs behave the same with the middleware."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_ws_close import ConnectionState, MiddlewareNotInstalled, WebSocketCloseMiddleware
from asgi_ws_close.starlette import CloseAwareEndpoint
from asgi_ws_close.testing import capture_closes
from tests.support.frameworkapps import emit, starlette_app
from tests.support.frameworkapps.clients import assert_closed

ENDPOINTS = ["/endpoint", "/mounted/endpoint"]


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(starlette_app.app) as client:
        yield client


def by_source(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["source"]: line for line in lines}


# --- CloseAwareEndpoint, in process -----------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_endpoint_client_close(client: TestClient, path: str) -> None:
    with emit.collect() as lines, client.websocket_connect(path) as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
        ws.close(4001, "bye")
    seen = by_source(lines)
    assert seen["handler"]["close_code"] == 4001
    for line in seen.values():
        assert_closed(line["record"], initiator="client", code=4001, reason="bye", clean=True)


def test_endpoint_app_close_is_what_close_code_cannot_say(client: TestClient) -> None:
    with emit.collect() as lines, client.websocket_connect("/endpoint") as ws:
        ws.send_text("close")
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text()
    seen = by_source(lines)
    # TestClient answers nothing to the app's close until its block ends, with 1000.
    assert seen["handler"]["close_code"] == 1000
    for line in seen.values():
        assert_closed(line["record"], initiator="app", code=4003, reason="nope", clean=True)


def test_endpoint_handler_error_leaves_the_context_open_in_on_disconnect(client: TestClient) -> None:
    with capture_closes(starlette_app.app) as closes, emit.collect() as lines:
        with pytest.raises(RuntimeError, match="boom"), client.websocket_connect("/endpoint") as ws:
            ws.send_text("raise")
            ws.receive_text()  # pragma: no cover
    seen = by_source(lines)
    # Starlette's dispatch passes 1011; the exception has not left the app yet.
    assert seen["handler"]["close_code"] == 1011
    assert seen["handler"]["record"]["state"] == "OPEN"
    # The outcome is in the record that the middleware finished (and its on_close hooks got).
    assert_closed(seen["on_close"]["record"], initiator="app", code=1006, reason="", clean=False)
    assert isinstance(closes.last.error, RuntimeError)


def test_endpoint_without_the_middleware_fails_before_on_connect() -> None:
    connected: list[bool] = []

    class Endpoint(CloseAwareEndpoint):
        async def on_connect(self, websocket: WebSocket) -> None:
            connected.append(True)  # pragma: no cover

    app = Starlette(routes=[WebSocketRoute("/ws", Endpoint)])
    with pytest.raises(MiddlewareNotInstalled, match="add_middleware"), TestClient(app).websocket_connect("/ws"):
        pass  # pragma: no cover
    assert connected == []


def test_endpoint_context_is_set_before_on_connect() -> None:
    states: list[ConnectionState] = []

    class Endpoint(CloseAwareEndpoint):
        async def on_connect(self, websocket: WebSocket) -> None:
            states.append(self.close_context.state)
            await websocket.close(4403, "forbidden")

    app = Starlette(routes=[WebSocketRoute("/ws", Endpoint)], middleware=[Middleware(WebSocketCloseMiddleware)])
    with capture_closes(app) as closes:
        with pytest.raises(WebSocketDisconnect) as refused, TestClient(app).websocket_connect("/ws"):
            pass  # pragma: no cover
    assert (refused.value.code, refused.value.reason) == (4403, "forbidden")
    assert states == [ConnectionState.CONNECTING]
    assert closes.last.state is ConnectionState.REJECTED


# --- plain routes: Starlette's docs patterns, with and without the middleware -----------


def docs_app(with_middleware: bool) -> Starlette:
    middleware = [Middleware(WebSocketCloseMiddleware)] if with_middleware else []
    seen: list[tuple[int, str]] = []

    async def route(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(f"echo {await websocket.receive_text()}")
        except WebSocketDisconnect as exc:
            seen.append((exc.code, exc.reason))

    app = Starlette(routes=[WebSocketRoute("/ws", route)], middleware=middleware)
    app.state.seen = seen
    return app


@pytest.mark.parametrize("with_middleware", [False, True], ids=["without", "with"])
def test_docs_pattern_is_unchanged(with_middleware: bool) -> None:
    app = docs_app(with_middleware)
    with TestClient(app).websocket_connect("/ws") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "echo hi"
        ws.close(4001, "bye")
    assert app.state.seen == [(4001, "bye")]


def test_docs_pattern_reads_the_context(client: TestClient) -> None:
    with emit.collect() as lines, client.websocket_connect("/docs") as ws:
        ws.close(4001, "bye")
    handler = by_source(lines)["handler"]
    assert (handler["exc_code"], handler["exc_reason"]) == (4001, "bye")
    assert_closed(handler["record"], initiator="client", code=4001, reason="bye", clean=True)


def test_iter_text_and_websocket_exception(client: TestClient) -> None:
    with emit.collect() as lines, client.websocket_connect("/iter") as ws:
        ws.close(4001, "bye")
    assert_closed(by_source(lines)["handler"]["record"], initiator="client", code=4001, reason="bye", clean=True)
    with emit.collect() as lines, client.websocket_connect("/iter") as ws:
        ws.send_text("close")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (4003, "nope")
    assert set(by_source(lines)) == {"on_close"}
    assert_closed(lines[0]["record"], initiator="app", code=4003, reason="nope", clean=True)


def test_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "starlette.endpoints", None)
    monkeypatch.delitem(sys.modules, "asgi_ws_close.starlette")
    with pytest.raises(ImportError, match=r'pip install "asgi-ws-close\[starlette\]"'):
        importlib.import_module("asgi_ws_close.starlette")


# --- the example ------------------------------------------------------------------------


def test_example_in_process(caplog: pytest.LogCaptureFixture) -> None:
    from examples.frameworks import starlette_endpoint

    caplog.set_level("INFO", logger="example")
    with capture_closes(starlette_endpoint.app) as closes, TestClient(starlette_endpoint.app) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_text("bye")
            with pytest.raises(WebSocketDisconnect):
                ws.receive_text()
    assert (closes.last.initiator, closes.last.code, closes.last.reason) == ("app", 4000, "see you")
    assert "handler saw: 4000 by app, reason 'see you'" in caplog.text
