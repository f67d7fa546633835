"""Litestar: the middleware in the middleware configuration; handlers, listeners and the DI
provider read the context; under Litestar's TestClient and under uvicorn."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest
from litestar import Litestar, WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.middleware import DefineMiddleware
from litestar.testing import TestClient

from asgi_ws_close import CloseContext, ConnectionState, MiddlewareNotInstalled, WebSocketCloseMiddleware
from asgi_ws_close.litestar import close_middleware
from asgi_ws_close.testing import capture_closes
from tests.support.frameworkapps import emit, litestar_app
from tests.support.frameworkapps.clients import assert_closed

PATHS = ["/ws", "/listener"]


# Every app here passes logging_config=None: by default Litestar configures the root logger
# when an app is made, which would reach the other tests of the same process.


def by_source(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["source"]: line for line in lines}


# --- in process, with Litestar's TestClient ----------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_client_close(path: str) -> None:
    # Not entered as a context manager: each session then waits for the app to finish.
    client = TestClient(litestar_app.app)
    with emit.collect() as lines, client.websocket_connect(path) as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
        ws.close(4001)  # Litestar's TestClient sends no reason
    seen = by_source(lines)
    assert set(seen) == {"handler", "on_close"}
    for line in seen.values():
        assert_closed(line["record"], initiator="client", code=4001, reason="", clean=True)


def test_app_close() -> None:
    with emit.collect() as lines, TestClient(litestar_app.app).websocket_connect("/ws") as ws:
        ws.send_text("close")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert (closed.value.code, closed.value.detail) == (4003, "nope")
    for line in by_source(lines).values():
        assert_closed(line["record"], initiator="app", code=4003, reason="nope", clean=True)


def test_entered_client_needs_wait() -> None:
    # Used as a context manager, Litestar's TestClient does not wait for the app at the end of
    # a session: the capture's wait() does.
    with TestClient(litestar_app.app) as client, capture_closes(litestar_app.app) as closes:
        with client.websocket_connect("/ws") as ws:
            ws.close(4001)
        record = closes.wait()
    assert (record.initiator, record.code) == ("client", 4001)


def test_without_the_middleware_the_error_names_the_fix() -> None:
    errors: list[BaseException] = []
    app = Litestar(
        [litestar_app.handler],
        logging_config=None,
        dependencies=litestar_app.dependencies,
        after_exception=[lambda exc, scope: errors.append(exc)],
    )
    # Litestar turns the exception into a 4500 close.
    with pytest.raises(WebSocketDisconnect) as closed, TestClient(app).websocket_connect("/ws"):
        pass  # pragma: no cover
    assert closed.value.code == 4500
    [error] = errors
    assert isinstance(error, MiddlewareNotInstalled)
    assert "middleware=[WebSocketCloseMiddleware]" in str(error)
    assert "DefineMiddleware(WebSocketCloseMiddleware" in str(error)


def test_unmatched_paths_are_not_tracked() -> None:
    # Litestar builds the middleware stack per route handler: a 404 never reaches it.
    hooked: list[CloseContext] = []
    app = Litestar(
        [litestar_app.handler],
        logging_config=None,
        # DefineMiddleware as Litestar's docs write it (close_middleware() is the typed spelling).
        middleware=[DefineMiddleware(WebSocketCloseMiddleware, on_close=lambda context, scope: hooked.append(context))],  # type: ignore[arg-type]
        dependencies=litestar_app.dependencies,
    )
    with pytest.raises(WebSocketDisconnect, match="Not Found"), TestClient(app).websocket_connect("/nowhere"):
        pass  # pragma: no cover
    assert hooked == []


def test_middleware_without_options_and_get_close_context() -> None:
    contexts: list[tuple[ConnectionState, CloseContext]] = []

    @websocket("/ws")
    async def route(socket: WebSocket[Any, Any, Any]) -> None:
        from asgi_ws_close import get_close_context

        context = get_close_context(socket)
        await socket.accept()
        try:
            await socket.receive_text()
        except WebSocketDisconnect:
            contexts.append((context.state, context))

    app = Litestar([route], middleware=[WebSocketCloseMiddleware], logging_config=None)  # type: ignore[list-item]
    with capture_closes(app) as closes:
        with TestClient(app).websocket_connect("/ws") as ws:
            ws.close(1001)
        with pytest.raises(WebSocketDisconnect), TestClient(app).websocket_connect("/nowhere"):
            pass  # pragma: no cover
    [(state, context)] = contexts
    assert state is ConnectionState.CLOSED
    assert (context.initiator, context.code) == ("client", 1001)
    # The capture wraps the whole app: it sees the unmatched path too, with a record of its
    # own (Litestar refuses it with a close before accept).
    assert [record.state for record in closes] == [ConnectionState.CLOSED, ConnectionState.REJECTED]


def test_close_middleware_checks_its_options() -> None:
    with pytest.raises(ValueError, match="invalid_close must be one of"):
        Litestar(
            [litestar_app.handler],
            logging_config=None,
            middleware=[close_middleware(invalid_close="nope")],
            dependencies=litestar_app.dependencies,
        )


def test_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "litestar", None)
    monkeypatch.delitem(sys.modules, "asgi_ws_close.litestar")
    with pytest.raises(ImportError, match=r'pip install "asgi-ws-close\[litestar\]"'):
        importlib.import_module("asgi_ws_close.litestar")


# --- the example ------------------------------------------------------------------------


def test_example_in_process() -> None:
    from examples.frameworks import litestar_app as example

    with capture_closes(example.app) as closes, TestClient(example.app).websocket_connect("/ws") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
        ws.close(4001)
    assert (closes.last.initiator, closes.last.code, closes.last.clean) == ("client", 4001, True)
