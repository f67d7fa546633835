"""In-process tests of the ASGI adapter: raw ASGI drivers, and Starlette/FastAPI TestClient."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import sys
import warnings
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi import WebSocket as FastAPIWebSocket
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_ws_close import (
    SCOPE_KEY,
    Close,
    CloseCode,
    CloseContext,
    ConnectionState,
    MiddlewareNotInstalled,
    WebSocketCloseMiddleware,
    current_close_context,
    get_close_context,
)
from asgi_ws_close._types import ASGIApp, Message, Receive, Scope, Send
from tests.support.asgi import echo_app

# --- a scripted ASGI server, in process -------------------------------------------------


class Driver:
    """Feeds scripted messages to an app and keeps what it sends, like a tiny server."""

    def __init__(self, incoming: list[Message], scope_type: str = "websocket") -> None:
        self.incoming = list(incoming)
        self.sent: list[Message] = []
        self.received: list[Message] = []
        self.scope: Scope = {"type": scope_type, "path": "/ws", "headers": [], "http_version": "1.1"}

    async def receive(self) -> Message:
        message = self.incoming.pop(0) if self.incoming else {"type": "websocket.disconnect", "code": 1006}
        self.received.append(message)
        return message

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def run(self, app: ASGIApp) -> None:
        asyncio.run(app(self.scope, self.receive, self.send))


def accepts_then_raises(error: BaseException) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise error

    return app


def run_reraises(driver: Driver, middleware: ASGIApp, error: BaseException) -> None:
    """Run ``middleware`` under ``driver``; check that it re-raises the app's ``error`` unchanged."""
    with pytest.raises(type(error)) as info:
        driver.run(middleware)
    assert info.value is error


class Hooks:
    def __init__(self) -> None:
        self.calls: list[tuple[CloseContext, Scope]] = []
        self.states: list[ConnectionState] = []

    def __call__(self, context: CloseContext, scope: Scope) -> None:
        self.calls.append((context, scope))
        self.states.append(context.state)


# --- transparency -----------------------------------------------------------------------


def test_every_message_is_forwarded_unchanged_and_in_order() -> None:
    incoming: list[Message] = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "a"},
        {"type": "websocket.receive", "bytes": b"b"},
        {"type": "websocket.receive", "text": "close"},
        {"type": "websocket.disconnect", "code": 4003, "reason": "nope"},
    ]
    expected_in = list(incoming)
    bare = Driver(incoming)
    bare.run(echo_app(4003, "nope"))
    wrapped = Driver(incoming)
    wrapped.run(WebSocketCloseMiddleware(echo_app(4003, "nope")))
    assert wrapped.sent == bare.sent
    # Identity, not just equality: the very same dicts travel both ways.
    assert all(a is b for a, b in zip(wrapped.received, expected_in, strict=True))
    assert len(wrapped.received) == len(expected_in)
    assert [m["type"] for m in wrapped.sent] == [
        "websocket.accept",
        "websocket.send",
        "websocket.send",
        "websocket.send",
        "websocket.close",
    ]


def test_sent_messages_are_the_apps_own_objects() -> None:
    outgoing: list[Message] = [
        {"type": "websocket.accept", "subprotocol": None, "headers": [(b"x", b"y")]},
        {"type": "websocket.send", "text": "hi"},
        {"type": "websocket.close", "code": 4000, "reason": "r"},
    ]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        for message in outgoing:
            await send(message)

    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(app))
    assert len(driver.sent) == 3
    assert all(a is b for a, b in zip(driver.sent, outgoing, strict=True))
    assert outgoing[2] == {"type": "websocket.close", "code": 4000, "reason": "r"}


def _chatty_driver() -> Driver:
    return Driver(
        [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "a"},
            {"type": "websocket.receive", "bytes": b"b"},
            {"type": "websocket.receive", "text": "close"},
            {"type": "websocket.disconnect", "code": 4003, "reason": "nope"},
        ]
    )


def test_messages_are_not_counted_by_default() -> None:
    driver = _chatty_driver()
    driver.run(WebSocketCloseMiddleware(echo_app(4003, "nope")))
    context = get_close_context(driver.scope)
    assert context.messages_received is None and context.messages_sent is None
    assert context.to_dict()["messages_received"] is None
    assert context.code == 4003  # everything else is recorded as with counting


def test_count_messages_counts_data_messages_only() -> None:
    driver = _chatty_driver()
    driver.run(WebSocketCloseMiddleware(echo_app(4003, "nope"), count_messages=True))
    context = get_close_context(driver.scope)
    # 3 websocket.receive in, 3 websocket.send out; connect, accept, close, disconnect are not data.
    assert (context.messages_received, context.messages_sent) == (3, 3)
    assert driver.sent == _bare_run(_chatty_driver(), echo_app(4003, "nope"))


def _bare_run(driver: Driver, app: ASGIApp) -> list[Message]:
    driver.run(app)
    return driver.sent


@pytest.mark.parametrize("count_messages", [False, True])
def test_a_data_send_is_the_servers_own_awaitable(count_messages: bool) -> None:
    # The app awaits what the server's send() returned: no frame of ours in between.
    returned: list[object] = []
    got: list[object] = []

    class Server(Driver):
        def send(self, message: Message) -> Awaitable[None]:  # type: ignore[override]
            awaitable = super().send(message)
            returned.append(awaitable)
            return awaitable

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        awaitable = send({"type": "websocket.send", "text": "hi"})
        got.append(awaitable)
        await awaitable
        await send({"type": "websocket.close", "code": 1000})

    server = Server([{"type": "websocket.connect"}])
    server.run(WebSocketCloseMiddleware(app, count_messages=count_messages))
    assert got[0] is returned[1]
    assert [m["type"] for m in server.sent] == ["websocket.accept", "websocket.send", "websocket.close"]


@pytest.mark.parametrize("count_messages", [False, True])
def test_the_wrapped_send_and_receive_are_coroutine_functions(count_messages: bool) -> None:
    # Code that inspects send (asgiref's async_to_sync, as Channels' sync consumers use it)
    # must see an async callable, as it does without the middleware.
    seen: list[tuple[bool, bool, bool, bool]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(
            (
                inspect.iscoroutinefunction(receive),
                asyncio.iscoroutinefunction(receive),
                sys.version_info < (3, 12) or inspect.iscoroutinefunction(send),
                asyncio.iscoroutinefunction(send),
            )
        )
        await receive()
        await send({"type": "websocket.close"})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # asyncio.iscoroutinefunction on 3.14
        Driver([{"type": "websocket.connect"}]).run(WebSocketCloseMiddleware(app, count_messages=count_messages))
    assert seen == [(True, True, True, True)]


@pytest.mark.parametrize("scope_type", ["http", "lifespan"])
def test_other_scopes_pass_straight_through_unwrapped(scope_type: str) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.update(receive=receive, send=send, scope=scope)

    driver = Driver([], scope_type=scope_type)
    hooks = Hooks()
    driver.run(WebSocketCloseMiddleware(app, on_close=hooks))
    assert seen["receive"] == driver.receive
    assert seen["send"] == driver.send
    assert SCOPE_KEY not in seen["scope"]
    assert hooks.calls == []


def test_server_send_errors_propagate_unchanged() -> None:
    error = OSError("client disconnected")

    async def failing_send(message: Message) -> None:
        if message["type"] == "websocket.send":
            raise error

    caught: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.send", "text": "x"})
        except OSError as exc:
            caught.append(exc)

    driver = Driver([{"type": "websocket.connect"}])
    asyncio.run(WebSocketCloseMiddleware(app)(driver.scope, driver.receive, failing_send))
    assert caught == [error]


# --- on_close ---------------------------------------------------------------------------


def test_on_close_runs_once_after_the_end_with_context_and_scope() -> None:
    hooks = Hooks()
    driver = Driver([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 4001, "reason": "bye"}])
    driver.run(WebSocketCloseMiddleware(echo_app(1000, ""), on_close=hooks))
    assert len(hooks.calls) == 1
    context, scope = hooks.calls[0]
    assert scope is driver.scope
    assert scope[SCOPE_KEY] is context
    assert hooks.states == [ConnectionState.CLOSED]
    assert (context.initiator, context.code, context.reason, context.clean) == ("client", 4001, "bye", True)


def test_async_on_close_is_awaited() -> None:
    records: list[dict[str, Any]] = []

    async def hook(context: CloseContext, scope: Scope) -> None:
        await asyncio.sleep(0)
        records.append(context.to_dict())

    driver = Driver([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}])
    driver.run(WebSocketCloseMiddleware(echo_app(1000, ""), on_close=hook))
    assert [r["code"] for r in records] == [1000]


class AsyncCallableHook:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, context: CloseContext, scope: Scope) -> None:
        self.count += 1


def test_on_close_may_be_an_object_with_an_async_call() -> None:
    hook = AsyncCallableHook()
    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(echo_app(1000, ""), on_close=hook))
    assert hook.count == 1


@pytest.mark.parametrize("is_async", [False, True])
def test_on_close_errors_are_logged_and_never_reach_the_server(
    is_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def sync_hook(context: CloseContext, scope: Scope) -> None:
        raise ValueError("hook bug")

    async def async_hook(context: CloseContext, scope: Scope) -> None:
        raise ValueError("hook bug")

    driver = Driver([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}])
    with caplog.at_level(logging.ERROR, logger="asgi_ws_close"):
        driver.run(WebSocketCloseMiddleware(echo_app(1000, ""), on_close=async_hook if is_async else sync_hook))
    assert [r.name for r in caplog.records] == ["asgi_ws_close"]
    assert caplog.records[0].exc_info is not None
    assert "on_close" in caplog.records[0].getMessage()


def test_on_close_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_close must be a callable"):
        WebSocketCloseMiddleware(echo_app(1000, ""), on_close="print")  # type: ignore[arg-type]


def test_rejected_handshakes_get_on_close_too() -> None:
    hooks = Hooks()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 4001, "reason": "no"})

    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(app, on_close=hooks))
    ((context, _),) = hooks.calls
    assert context.state is ConnectionState.REJECTED
    assert context.http_status == 403
    assert context.sent == Close(4001, "no")


# --- errors and cancellation ------------------------------------------------------------


def test_app_errors_are_recorded_and_reraised_unchanged() -> None:
    error = RuntimeError("boom")
    hooks = Hooks()
    driver = Driver([{"type": "websocket.connect"}])
    run_reraises(driver, WebSocketCloseMiddleware(accepts_then_raises(error), on_close=hooks), error)
    ((context, _),) = hooks.calls
    assert context.error is error
    assert context.clean is False
    assert context.state is ConnectionState.CLOSED


def test_cancellation_propagates_and_is_recorded_as_the_server() -> None:
    hooks = Hooks()
    started = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        started.set()
        await asyncio.Event().wait()  # until cancelled

    async def main() -> None:
        driver = Driver([{"type": "websocket.connect"}])
        task = asyncio.create_task(
            WebSocketCloseMiddleware(app, on_close=hooks)(driver.scope, driver.receive, driver.send)
        )
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    ((context, _),) = hooks.calls
    assert context.initiator == "server"
    assert context.error is None
    assert context.state is ConnectionState.CLOSED


# --- the read paths ---------------------------------------------------------------------


def test_current_close_context_is_set_for_the_app_and_reset_after() -> None:
    seen: list[CloseContext | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(current_close_context())
        await receive()

    def hook(context: CloseContext, scope: Scope) -> None:
        seen.append(current_close_context())

    async def main() -> None:
        driver = Driver([{"type": "websocket.connect"}])
        await WebSocketCloseMiddleware(app, on_close=hook)(driver.scope, driver.receive, driver.send)
        seen.append(current_close_context())
        seen.append(driver.scope[SCOPE_KEY])

    asyncio.run(main())
    assert seen[0] is seen[1] is seen[3]
    assert isinstance(seen[0], CloseContext)
    assert seen[2] is None


def test_concurrent_connections_each_see_their_own_context() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(0)
        assert current_close_context() is scope[SCOPE_KEY]
        message = await receive()
        assert current_close_context() is scope[SCOPE_KEY]
        assert get_close_context(scope).received == Close(message["code"], message["reason"])

    async def main() -> list[int | None]:
        mw = WebSocketCloseMiddleware(app)
        drivers = [
            Driver(
                [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 4000 + i, "reason": str(i)}]
            )
            for i in range(50)
        ]
        await asyncio.gather(*(mw(d.scope, d.receive, d.send) for d in drivers))
        return [get_close_context(d.scope).code for d in drivers]

    assert asyncio.run(main()) == [4000 + i for i in range(50)]


def test_get_close_context_without_the_middleware_names_the_fix() -> None:
    with pytest.raises(MiddlewareNotInstalled, match=r"app\.add_middleware\(WebSocketCloseMiddleware\)"):
        get_close_context({"type": "websocket"})
    with pytest.raises(LookupError):
        get_close_context({"type": "websocket"})
    with pytest.raises(ValueError, match="is for WebSocket connections, and this is a 'http' scope"):
        get_close_context({"type": "http"})
    with pytest.raises(TypeError, match="takes a WebSocket or an ASGI scope"):
        get_close_context(42)


def test_the_context_is_read_only() -> None:
    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(echo_app(1000, "")))
    context = get_close_context(driver.scope)
    with pytest.raises(AttributeError):
        context.code = 1000  # type: ignore[misc]
    with pytest.raises(AttributeError):
        context.anything = 1  # type: ignore[attr-defined]


def test_snapshot_is_frozen_and_to_dict_is_json() -> None:
    import json

    driver = Driver(
        [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "hi"},
            {"type": "websocket.disconnect", "code": 4001, "reason": "bye"},
        ]
    )
    driver.run(WebSocketCloseMiddleware(echo_app(1000, ""), count_messages=True))
    context = get_close_context(driver.scope)
    snapshot = context.snapshot()
    assert snapshot.code == context.code == 4001
    assert str(snapshot) == str(context) == "closed by client: 4001 (private use) bye, clean"
    data = json.loads(json.dumps(context.to_dict()))
    assert data == {
        "state": "CLOSED",
        "outcome": "client_closed",
        "initiator": "client",
        "code": 4001,
        "code_name": None,
        "code_explanation": "private use",
        "reason": "bye",
        "clean": True,
        "received": {"code": 4001, "reason": "bye"},
        "sent": None,
        "received_then_sent": True,
        "requested": None,
        "sends_after_close": 0,
        "error": None,
        "http_status": None,
        "opened_at": context.opened_at,
        "closed_at": context.closed_at,
        "duration": context.duration,
        "messages_received": 1,
        "messages_sent": 1,
        "server": None,
        "http_version": "1.1",
        "unknown": [],
    }
    assert data["duration"] >= 0
    assert data["closed_at"] >= data["opened_at"]


def test_error_in_to_dict_is_type_and_message() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise KeyError("missing")

    driver = Driver([{"type": "websocket.connect"}])
    with pytest.raises(KeyError):
        driver.run(WebSocketCloseMiddleware(app))
    record = get_close_context(driver.scope).to_dict()
    assert record["error"] == {"type": "KeyError", "message": "'missing'"}
    assert record["state"] == "REJECTED"
    assert record["http_status"] == 500


# --- nesting and lifetime ---------------------------------------------------------------


def test_a_second_instance_reuses_the_first_context_and_both_hooks_run_once() -> None:
    outer_hooks, inner_hooks = Hooks(), Hooks()
    contexts: list[CloseContext] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        contexts.append(get_close_context(scope))
        await echo_app(1000, "")(scope, receive, send)

    inner = WebSocketCloseMiddleware(app, on_close=inner_hooks, count_messages=True)
    outer = WebSocketCloseMiddleware(inner, on_close=outer_hooks, count_messages=True)
    driver = Driver(
        [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": "a"},
            {"type": "websocket.disconnect", "code": 4001, "reason": "x"},
        ]
    )
    driver.run(outer)
    assert len(outer_hooks.calls) == len(inner_hooks.calls) == 1
    assert outer_hooks.calls[0][0] is inner_hooks.calls[0][0] is contexts[0]
    assert inner_hooks.states == [ConnectionState.CLOSED]
    # Counted once, by the outer instance.
    assert (contexts[0].messages_received, contexts[0].messages_sent) == (1, 1)


def test_nothing_is_retained_after_the_connection_ends() -> None:
    mw = WebSocketCloseMiddleware(echo_app(1000, ""))
    before = dict(vars(mw))
    driver = Driver([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}])
    driver.run(mw)
    ref = weakref.ref(driver.scope[SCOPE_KEY])
    del driver
    gc.collect()
    assert ref() is None
    assert vars(mw) == before


# --- Starlette and FastAPI through TestClient -------------------------------------------


def make_starlette(endpoint: Callable[[WebSocket], Awaitable[None]], hooks: Hooks) -> Starlette:
    return Starlette(
        routes=[WebSocketRoute("/ws", endpoint)],
        middleware=[Middleware(WebSocketCloseMiddleware, on_close=hooks)],
    )


def test_testclient_client_close_is_read_in_the_handler() -> None:
    hooks = Hooks()
    seen: list[dict[str, Any]] = []

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            seen.append(get_close_context(websocket).to_dict())

    with TestClient(make_starlette(endpoint, hooks)) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
            ws.close(4001, "bye")
    assert len(hooks.calls) == 1
    record = seen[0]
    assert (record["state"], record["initiator"], record["code"], record["reason"], record["clean"]) == (
        "CLOSED",
        "client",
        4001,
        "bye",
        True,
    )
    assert hooks.calls[0][0].to_dict()["code"] == 4001


def test_testclient_app_close_is_recorded() -> None:
    hooks = Hooks()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close(4003, "nope")

    with TestClient(make_starlette(endpoint, hooks)) as client:
        with client.websocket_connect("/ws") as ws:
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_text()
    assert (info.value.code, info.value.reason) == (4003, "nope")
    ((context, _),) = hooks.calls
    assert (context.state, context.initiator, context.code, context.reason) == (
        ConnectionState.CLOSED,
        "app",
        4003,
        "nope",
    )
    assert context.sent == Close(4003, "nope")


def test_testclient_rejection_is_recorded() -> None:
    hooks = Hooks()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.close(4401, "unauthorised")

    with TestClient(make_starlette(endpoint, hooks)) as client:
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/ws"):
                pass  # pragma: no cover
    ((context, _),) = hooks.calls
    assert context.state is ConnectionState.REJECTED
    assert context.http_status == 403
    assert context.sent == Close(4401, "unauthorised")


def test_fastapi_add_middleware_and_handler_read() -> None:
    hooks = Hooks()
    app = FastAPI()
    app.add_middleware(WebSocketCloseMiddleware, on_close=hooks)
    seen: list[CloseContext] = []

    @app.websocket("/ws")
    async def endpoint(websocket: FastAPIWebSocket) -> None:
        await websocket.accept()
        assert get_close_context(websocket).state is ConnectionState.OPEN
        try:
            await websocket.receive_text()
        except WebSocketDisconnect:
            seen.append(get_close_context(websocket))

    with TestClient(app) as client:
        with client.websocket_connect("/ws") as ws:
            ws.close(1001, "tab closed")
    assert seen[0] is hooks.calls[0][0]
    assert (seen[0].code, seen[0].reason, seen[0].initiator) == (1001, "tab closed", "client")


def test_fastapi_without_the_middleware_gives_the_fix() -> None:
    app = FastAPI()
    messages: list[str] = []

    @app.websocket("/ws")
    async def endpoint(websocket: FastAPIWebSocket) -> None:
        try:
            get_close_context(websocket)
        except MiddlewareNotInstalled as exc:
            messages.append(str(exc))
        await websocket.close()

    with TestClient(app) as client:
        with pytest.raises(WebSocketDisconnect):
            with client.websocket_connect("/ws"):
                pass  # pragma: no cover
    assert "app.add_middleware(WebSocketCloseMiddleware)" in messages[0]


@pytest.mark.parametrize("odd", [None, {}, {"no": "type"}, 42])
def test_odd_messages_pass_through_without_an_error_of_ours(odd: Any) -> None:
    got: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        got.append(await receive())
        await send(odd)

    driver = Driver([odd])
    driver.run(WebSocketCloseMiddleware(app))
    assert got[0] is odd
    assert driver.sent[0] is odd


# --- several hooks ----------------------------------------------------------------------


def test_several_hooks_run_in_order_and_one_failing_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    order: list[str] = []

    def first(context: CloseContext, scope: Scope) -> None:
        order.append("first")
        raise RuntimeError("first hook bug")

    async def second(context: CloseContext, scope: Scope) -> None:
        order.append("second")

    def third(context: CloseContext, scope: Scope) -> None:
        order.append(f"third {context.code}")

    driver = Driver([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}])
    with caplog.at_level(logging.ERROR, logger="asgi_ws_close"):
        driver.run(WebSocketCloseMiddleware(echo_app(1000, ""), on_close=[first, second, third]))
    assert order == ["first", "second", "third 1000"]
    assert len(caplog.records) == 1


@pytest.mark.parametrize("bad", ["print", 42, [print, "x"]])
def test_every_hook_must_be_callable(bad: Any) -> None:
    with pytest.raises(TypeError, match="on_close must be a callable taking"):
        WebSocketCloseMiddleware(echo_app(1000, ""), on_close=bad)


def test_hooks_never_run_on_the_message_path() -> None:
    calls: list[ConnectionState] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # the disconnect
        assert calls == []  # the connection ended, but the app has not returned yet
        await send({"type": "websocket.send", "text": "late"})

    driver = Driver([{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}])
    driver.run(WebSocketCloseMiddleware(app, on_close=lambda c, s: calls.append(c.state)))
    assert calls == [ConnectionState.CLOSED]
    assert get_close_context(driver.scope).sends_after_close == 1


# --- close policies, in process ---------------------------------------------------------


def closing_app(code: Any, reason: Any, accept: bool = True) -> tuple[ASGIApp, list[BaseException]]:
    errors: list[BaseException] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if accept:
            await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.close", "code": code, "reason": reason})
        except ValueError as exc:
            errors.append(exc)

    return app, errors


def test_invalid_close_must_be_a_known_policy() -> None:
    with pytest.raises(ValueError, match="invalid_close must be one of 'pass', 'fix' or 'raise'"):
        WebSocketCloseMiddleware(echo_app(1000, ""), invalid_close="repair")  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "reason"), [(999, "bad"), (1005, ""), (4000, "x" * 124)])
def test_pass_forwards_invalid_closes_unchanged(code: int, reason: str) -> None:
    app, _ = closing_app(code, reason)
    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(app))
    assert driver.sent[-1] == {"type": "websocket.close", "code": code, "reason": reason}


@pytest.mark.parametrize(
    ("code", "reason", "wire_code", "wire_reason"),
    [
        (999, "bad", 1011, "bad"),
        (1005, "none", 1000, "none"),
        (1006, "", 1011, ""),
        (5000, "", 1011, ""),
        (4000, "é" * 80, 4000, "é" * 61),
        (CloseCode.GOING_AWAY, "fine", 1001, "fine"),
    ],
)
def test_fix_repairs_the_close_and_records_both(code: int, reason: str, wire_code: int, wire_reason: str) -> None:
    app, _ = closing_app(code, reason)
    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(app, invalid_close="fix"))
    assert driver.sent[-1] == {"type": "websocket.close", "code": wire_code, "reason": wire_reason}
    context = get_close_context(driver.scope)
    assert context.requested == Close(code, reason)
    assert context.sent == Close(wire_code, wire_reason)
    assert (context.code, context.reason) == (wire_code, wire_reason)


def accepting_then_sending(message: Message) -> ASGIApp:
    """An app that accepts, then sends ``message`` itself (the very object)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send(message)

    return app


def test_fix_never_modifies_the_apps_message() -> None:
    message: Message = {"type": "websocket.close", "code": 999, "reason": "x"}
    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(accepting_then_sending(message), invalid_close="fix"))
    assert message == {"type": "websocket.close", "code": 999, "reason": "x"}
    assert driver.sent[-1] is not message


def test_a_valid_close_goes_through_fix_as_the_same_object() -> None:
    message: Message = {"type": "websocket.close", "code": 4000, "reason": "ok"}
    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(accepting_then_sending(message), invalid_close="fix"))
    assert driver.sent[-1] is message


@pytest.mark.parametrize(
    ("code", "reason", "rule"),
    [(999, "", "close code 999"), (1006, "", "close code 1006"), (1000, "x" * 200, "200 bytes")],
)
def test_raise_refuses_the_close_and_sends_nothing(code: int, reason: str, rule: str) -> None:
    app, errors = closing_app(code, reason)
    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(app, invalid_close="raise"))
    assert [m["type"] for m in driver.sent] == ["websocket.accept"]
    assert len(errors) == 1 and rule in str(errors[0]) and "nothing was sent" in str(errors[0])
    context = get_close_context(driver.scope)
    assert context.sent is None
    assert context.code == 1006  # the app then returned without a (valid) close


def test_policies_do_not_touch_a_close_before_accept() -> None:
    app, errors = closing_app(999, "x" * 200, accept=False)
    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(app, invalid_close="raise"))
    assert errors == []
    assert driver.sent == [{"type": "websocket.close", "code": 999, "reason": "x" * 200}]
    assert get_close_context(driver.scope).http_status == 403


def test_close_on_error_sends_1011_then_reraises() -> None:
    error = RuntimeError("boom")
    driver = Driver([{"type": "websocket.connect"}])
    run_reraises(driver, WebSocketCloseMiddleware(accepts_then_raises(error), close_on_error=True), error)
    assert driver.sent[-1] == {"type": "websocket.close", "code": 1011, "reason": ""}
    context = get_close_context(driver.scope)
    assert (context.state, context.initiator, context.code, context.clean) == (
        ConnectionState.CLOSED,
        "app",
        1011,
        False,
    )
    assert context.error is error


def test_close_on_error_does_nothing_when_already_closed_or_not_accepted() -> None:
    async def closes_then_raises(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": ""})
        raise RuntimeError("after close")

    async def raises_before_accept(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise RuntimeError("before accept")

    for app, expected in [(closes_then_raises, 2), (raises_before_accept, 0)]:
        driver = Driver([{"type": "websocket.connect"}])
        with pytest.raises(RuntimeError):
            driver.run(WebSocketCloseMiddleware(app, close_on_error=True))
        assert len(driver.sent) == expected


def test_close_on_error_survives_a_server_that_refuses_the_close() -> None:
    error = RuntimeError("boom")
    app = accepts_then_raises(error)

    async def refusing_send(message: Message) -> None:
        if message["type"] == "websocket.close":
            raise OSError("gone")

    driver = Driver([{"type": "websocket.connect"}])
    with pytest.raises(RuntimeError) as info:
        asyncio.run(WebSocketCloseMiddleware(app, close_on_error=True)(driver.scope, driver.receive, refusing_send))
    assert info.value is error
    assert get_close_context(driver.scope).code == 1006


def test_reject_with_close_code_accepts_then_closes() -> None:
    app, _ = closing_app(4401, "token expired", accept=False)
    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(app, reject_with_close_code=True))
    assert driver.sent == [
        {"type": "websocket.accept"},
        {"type": "websocket.close", "code": 4401, "reason": "token expired"},
    ]
    context = get_close_context(driver.scope)
    assert context.state is ConnectionState.REJECTED
    assert (context.code, context.reason, context.clean, context.http_status) == (4401, "token expired", True, None)


def test_reject_with_close_code_and_fix_repair_the_rejection() -> None:
    app, _ = closing_app(1006, "x" * 130, accept=False)
    driver = Driver([{"type": "websocket.connect"}])
    driver.run(WebSocketCloseMiddleware(app, reject_with_close_code=True, invalid_close="fix"))
    assert driver.sent[-1] == {"type": "websocket.close", "code": 1011, "reason": "x" * 123}
    context = get_close_context(driver.scope)
    assert context.requested == Close(1006, "x" * 130)
    assert context.sent == Close(1011, "x" * 123)


def test_reject_with_close_code_records_a_failed_send() -> None:
    app, _ = closing_app(4401, "token expired", accept=False)

    async def gone(message: Message) -> None:
        raise OSError("client left during the handshake")

    driver = Driver([{"type": "websocket.connect"}])
    with pytest.raises(OSError):
        asyncio.run(WebSocketCloseMiddleware(app, reject_with_close_code=True)(driver.scope, driver.receive, gone))
    context = get_close_context(driver.scope)
    assert (context.state, context.code, context.clean) == (ConnectionState.REJECTED, 1006, False)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_to_dict_survives_an_exception_that_cannot_be_printed() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise Unprintable

    driver = Driver([{"type": "websocket.connect"}])
    with pytest.raises(Unprintable):
        driver.run(WebSocketCloseMiddleware(app))
    error = get_close_context(driver.scope).to_dict()["error"]
    assert error == {"type": "Unprintable", "message": "<unprintable Unprintable>"}
