"""asgi_ws_close.testing: capture_closes() and CloseCapture, with and without the middleware."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_ws_close import (
    SCOPE_KEY,
    Close,
    CloseContext,
    CloseRecord,
    ConnectionState,
    MiddlewareNotInstalled,
    WebSocketCloseMiddleware,
    current_close_context,
    get_close_context,
)
from asgi_ws_close._types import Message, Receive, Scope, Send
from asgi_ws_close.testing import CloseCapture, capture_closes


async def guarded(websocket: WebSocket) -> None:
    """Refuses a bad token before accept; echoes; closes 4000 "done" on "done"."""
    if websocket.query_params.get("token") != "good":
        await websocket.close(4403, "forbidden")
        return
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            if text == "done":
                await websocket.close(4000, "done")
                return
            if text == "raise":
                raise RuntimeError("boom")
            await websocket.send_text(text)
    except WebSocketDisconnect:
        pass


async def hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("hello")


def make_app(*, middleware: list[Middleware] | None = None) -> Starlette:
    return Starlette(
        routes=[WebSocketRoute("/ws", guarded), Route("/", hello)],
        middleware=[Middleware(WebSocketCloseMiddleware)] if middleware is None else middleware,
    )


APP_KINDS = {"with middleware": None, "without middleware": []}


# --- the docstring's two lines ----------------------------------------------------------


@pytest.mark.parametrize("middleware", APP_KINDS.values(), ids=APP_KINDS.keys())
def test_bad_token_is_refused(middleware: list[Middleware] | None) -> None:
    app = make_app(middleware=middleware)
    client = TestClient(app)
    with capture_closes(app) as closes, pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws?token=bad"):
        pass  # pragma: no cover
    assert closes.last.sent == Close(4403, "forbidden")
    # What a real server would do: HTTP 403, so a browser reports 1006.
    assert (closes.last.state, closes.last.http_status, closes.last.code) == (ConnectionState.REJECTED, 403, 1006)


@pytest.mark.parametrize("middleware", APP_KINDS.values(), ids=APP_KINDS.keys())
def test_records_of_closes_after_accept(middleware: list[Middleware] | None) -> None:
    app = make_app(middleware=middleware)
    client = TestClient(app)
    with capture_closes(app) as closes:
        with client.websocket_connect("/ws?token=good") as ws:
            ws.send_text("done")
            with pytest.raises(WebSocketDisconnect):
                ws.receive_text()
        with client.websocket_connect("/ws?token=good") as ws:
            ws.close(4001, "bye")
        with client.websocket_connect("/ws?token=good"):
            pass  # TestClient sends 1000 when the block ends
        assert client.get("/").text == "hello"  # HTTP passes through, uncaptured
    assert [(r.initiator, r.code, r.reason, r.clean) for r in closes] == [
        ("app", 4000, "done", True),
        ("client", 4001, "bye", True),
        ("client", 1000, "", True),
    ]
    assert all(isinstance(record, CloseRecord) for record in closes.records)


@pytest.mark.parametrize("middleware", APP_KINDS.values(), ids=APP_KINDS.keys())
def test_app_errors_and_simulated_transport_loss(middleware: list[Middleware] | None) -> None:
    app = make_app(middleware=middleware)
    client = TestClient(app)
    with capture_closes(app) as closes:
        with pytest.raises(RuntimeError, match="boom"), client.websocket_connect("/ws?token=good") as ws:
            ws.send_text("raise")
            ws.receive_text()  # pragma: no cover
        assert isinstance(closes.last.error, RuntimeError)
        assert (closes.last.code, closes.last.clean) == (1006, False)
        # TestClient cannot drop a TCP connection; a disconnect with 1006 is how servers say it.
        with client.websocket_connect("/ws?token=good") as ws:
            ws.send({"type": "websocket.disconnect", "code": 1006})
        assert (closes.last.initiator, closes.last.code, closes.last.clean) == (None, 1006, False)


# --- the capture observes; it never changes what the app sees -----------------------------


def test_without_the_middleware_the_app_still_has_no_context() -> None:
    seen: list[tuple[bool, CloseContext | None, type[BaseException] | None]] = []

    async def route(websocket: WebSocket) -> None:
        try:
            get_close_context(websocket)
        except MiddlewareNotInstalled as exc:
            error: type[BaseException] | None = type(exc)
        else:  # pragma: no cover
            error = None
        seen.append((SCOPE_KEY in websocket.scope, current_close_context(), error))
        await websocket.accept()
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", route)])
    with capture_closes(app) as closes, TestClient(app).websocket_connect("/ws") as ws:
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text()
    assert seen == [(False, None, MiddlewareNotInstalled)]
    assert (closes.last.initiator, closes.last.code) == ("app", 1000)


def test_with_the_middleware_the_record_is_the_apps_own_with_its_policies() -> None:
    # Records the app's policies' effects: a capture with a tracker of its own would see an
    # accept and a close here, not a rejection, and not the close the app asked for.
    hooked: list[CloseContext] = []

    async def refuse(websocket: WebSocket) -> None:
        await websocket.close(1005, "bad code")

    app = Starlette(
        routes=[WebSocketRoute("/ws", refuse)],
        middleware=[
            Middleware(
                WebSocketCloseMiddleware,
                reject_with_close_code=True,
                invalid_close="fix",
                on_close=lambda context, scope: hooked.append(context),
            )
        ],
    )
    with capture_closes(app) as closes:
        with pytest.raises(WebSocketDisconnect) as closed, TestClient(app).websocket_connect("/ws") as ws:
            ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (1000, "bad code")  # accepted, then closed
    record = closes.last
    assert record.state is ConnectionState.REJECTED
    assert (record.sent, record.requested) == (Close(1000, "bad code"), Close(1005, "bad code"))
    # One connection, one context: the app's hook and the capture saw the same one.
    assert len(closes) == len(hooked) == 1
    assert hooked[0].snapshot() == record


def test_the_lazily_built_middleware_stack() -> None:
    app = make_app()
    app.add_middleware(WebSocketCloseMiddleware)  # added after construction: Starlette builds later
    assert app.middleware_stack is None
    with capture_closes(app) as closes:
        wrapped = app.middleware_stack
        with TestClient(app).websocket_connect("/ws?token=good") as ws:
            ws.close(4001, "bye")
    # Restored to the stack that Starlette would have built on its first call.
    assert app.middleware_stack is not None and app.middleware_stack is not wrapped
    with TestClient(app).websocket_connect("/ws?token=good") as ws:
        ws.close(4002)
    assert [record.code for record in closes] == [4001]


def test_an_app_that_already_runs_and_nested_captures() -> None:
    app = make_app()
    with TestClient(app) as client:  # lifespan: the stack is built
        with capture_closes(app) as outer:
            with client.websocket_connect("/ws?token=good") as ws:
                ws.close(4001)
            with capture_closes(app) as inner, client.websocket_connect("/ws?token=good") as ws:
                ws.close(4002)
    assert [record.code for record in outer] == [4001, 4002]
    assert [record.code for record in inner] == [4002]


def test_a_middleware_instance_in_place() -> None:
    hooked: list[int | None] = []
    app = WebSocketCloseMiddleware(make_app(middleware=[]), on_close=lambda context, scope: hooked.append(context.code))
    hooks = app.hooks
    with capture_closes(app) as closes, TestClient(app).websocket_connect("/ws?token=good") as ws:
        ws.close(4001, "bye")
    assert app.hooks == hooks
    assert hooked == [4001]
    assert (closes.last.initiator, closes.last.code, closes.last.reason) == ("client", 4001, "bye")


def test_an_inner_middleware_instance_shares_the_outer_context() -> None:
    # The outer instance owns the context; the inner one's hooks (the capture's) run after its own.
    inner = WebSocketCloseMiddleware(make_app(middleware=[]))
    outer = WebSocketCloseMiddleware(inner)
    with capture_closes(inner) as closes, TestClient(outer).websocket_connect("/ws?token=good") as ws:
        ws.close(4001)
    assert [record.code for record in closes] == [4001]


def test_any_other_asgi_app_is_wrapped_explicitly() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "raw"})

    with pytest.raises(TypeError, match=r"CloseCapture\(\).*capture\.wrap\(app\)"):
        with capture_closes(raw):
            pass  # pragma: no cover

    # An in-process client of another kind: a scripted one.
    capture = CloseCapture()
    incoming: list[Message] = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 4000}]
    outgoing: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        outgoing.append(message)

    asyncio.run(capture.wrap(raw)({"type": "websocket", "path": "/"}, receive, send))
    assert [message["type"] for message in outgoing] == ["websocket.accept", "websocket.close"]
    assert (capture.last.initiator, capture.last.code, capture.last.reason) == ("app", 4000, "raw")
    assert capture.last.state is ConnectionState.CLOSED


def test_a_failed_send_and_a_cancelled_app() -> None:
    capture = CloseCapture()

    async def closing(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    async def hanging(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.accept"})
        await asyncio.Event().wait()

    async def receive() -> Message:  # pragma: no cover
        raise AssertionError("not called")

    async def refusing_close(message: Message) -> None:
        if message["type"] == "websocket.close":
            raise OSError("the server refused the close")

    async def run() -> None:
        with pytest.raises(OSError):
            await capture.wrap(closing)({"type": "websocket"}, receive, refusing_close)
        task = asyncio.ensure_future(capture.wrap(hanging)({"type": "websocket"}, receive, refusing_close))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    failed, cancelled = capture.records
    assert (failed.code, failed.clean) == (1006, False)
    # A cancelled handler's code depends on who cancelled it: unknown, not guessed.
    assert (cancelled.initiator, cancelled.code, cancelled.clean) == ("server", None, None)
    assert "code" in cancelled.unknown


# --- reading records -----------------------------------------------------------------------


def test_last_wait_and_clear() -> None:
    capture = CloseCapture()
    with pytest.raises(AssertionError, match="No WebSocket connection has ended"):
        _ = capture.last
    with pytest.raises(AssertionError, match=r"0 WebSocket connection\(s\) ended within 0.01 s, expected 1"):
        capture.wait(timeout=0.01)

    async def waits_in_a_loop() -> None:
        with pytest.raises(RuntimeError, match="running event loop"):
            capture.wait()

    asyncio.run(waits_in_a_loop())

    app = make_app()
    with capture_closes(app) as closes:
        with TestClient(app).websocket_connect("/ws?token=good") as ws:
            ws.close(4001)
        assert closes.wait(count=1, timeout=1).code == 4001
        closes.records.clear()  # a copy
        assert len(closes) == 1
        closes.clear()
        assert len(closes) == 0
