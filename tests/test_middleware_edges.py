"""The adapter's rare paths, each a behaviour: an app coroutine closed instead of resumed (its
event loop gone), hooks at that moment (one that raises, async ones with and without a running
loop), a hook that raises BaseException, and `server=` overriding detection."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine, Generator
from typing import Any

import pytest

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware, current_close_context
from asgi_ws_close._middleware import _Connection
from asgi_ws_close._servers import SERVERS
from asgi_ws_close._types import Message, Receive, Scope, Send


class _Pending:
    """An awaitable that suspends once and is never resumed (a server that says nothing more)."""

    def __await__(self) -> Generator[None, None, Message]:
        yield
        raise AssertionError("never resumed")  # pragma: no cover - the coroutine is closed instead


async def _open_then_wait(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await receive()  # suspended here when the coroutine is closed


class _ClientCloses:
    """An awaitable that suspends once, then gives the client's close (a server that says it later)."""

    def __await__(self) -> Generator[None, None, Message]:
        yield
        return {"type": "websocket.disconnect", "code": 4001, "reason": "bye"}


def _suspended(
    hooks: list[Any], then: type[_Pending | _ClientCloses] = _Pending
) -> tuple[Coroutine[Any, Any, None], Scope]:
    """The middleware's coroutine for one connection, stepped until the app waits in receive()."""
    messages: list[Message] = [{"type": "websocket.connect"}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        return await then()

    async def send(message: Message) -> None:
        return None

    scope: Scope = {"type": "websocket", "path": "/ws", "headers": []}
    coroutine = WebSocketCloseMiddleware(_open_then_wait, on_close=hooks)(scope, receive, send)
    coroutine.send(None)
    return coroutine, scope


def test_a_closed_coroutine_gets_its_record_and_hooks_once(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, Any]] = []

    def raising(context: CloseContext, scope: Scope) -> None:
        raise RuntimeError("hook failed")

    def recording(context: CloseContext, scope: Scope) -> None:
        seen.append((context.outcome, context.code))

    coroutine, scope = _suspended([raising, recording])
    with caplog.at_level(logging.ERROR, logger="asgi_ws_close"):
        coroutine.close()
    # The server ended it (the app was never resumed); the raising hook did not stop the next.
    assert seen == [("server_shutdown", 1006)]
    assert any("on_close hook" in record.getMessage() for record in caplog.records)
    assert current_close_context() is None


def test_a_coroutine_closed_outside_its_context_sets_the_variable_back_there() -> None:
    # Stepped in a copied context (as a task's), closed from outside it: the reset cannot use
    # its token, and the variable is set back to what it was.
    seen: list[str | None] = []
    ran_in = contextvars.copy_context()
    coroutine, scope = ran_in.run(_suspended, [lambda context, scope: seen.append(context.outcome)])
    assert ran_in.run(current_close_context) is scope["asgi_ws_close"]
    coroutine.close()
    assert seen == ["server_shutdown"]
    assert current_close_context() is None


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_a_connection_resumed_in_another_context_sets_the_variable_back_there(kind: str) -> None:
    # Stepped in one context, resumed to its end in another (a driver that switches contexts):
    # the hooks get the record, and the reset, which cannot use its token there, sets the
    # variable back to what it was in the context that ran the end.
    seen: list[tuple[str | None, int | None]] = []

    def plain(context: CloseContext, scope: Scope) -> None:
        seen.append((context.outcome, context.code))

    async def asynchronous(context: CloseContext, scope: Scope) -> None:
        plain(context, scope)

    started_in = contextvars.copy_context()
    coroutine, scope = started_in.run(_suspended, [plain if kind == "plain" else asynchronous], _ClientCloses)
    resumed_in = contextvars.copy_context()
    with pytest.raises(StopIteration):
        resumed_in.run(coroutine.send, None)
    assert seen == [("client_closed", 4001)]
    assert resumed_in.run(current_close_context) is None
    assert started_in.run(current_close_context) is scope["asgi_ws_close"]


def test_at_exit_an_async_hook_runs_on_a_loop_of_its_own() -> None:
    seen: list[str | None] = []

    async def hook(context: CloseContext, scope: Scope) -> None:
        await asyncio.sleep(0)
        seen.append(context.outcome)

    coroutine, scope = _suspended([hook])
    coroutine.close()  # no loop runs here
    assert seen == ["server_shutdown"]


def test_inside_a_running_loop_an_async_hook_gets_one_step(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    async def quick(context: CloseContext, scope: Scope) -> None:
        seen.append("quick")

    async def slow(context: CloseContext, scope: Scope) -> None:
        await asyncio.sleep(1)
        seen.append("slow")  # pragma: no cover - it never gets that far

    # Stepped in a context of its own (as a task's), closed inside another loop's task.
    coroutine, scope = contextvars.copy_context().run(_suspended, [quick, slow])

    async def close_inside_a_loop() -> None:
        coroutine.close()  # as the garbage collector does, inside a running loop's callback

    with caplog.at_level(logging.WARNING, logger="asgi_ws_close"):
        asyncio.run(close_inside_a_loop())
    assert seen == ["quick"]
    assert any("could not finish" in record.getMessage() for record in caplog.records)


def test_a_hook_that_raises_baseexception_propagates_and_the_variable_is_reset() -> None:
    def interrupting(context: CloseContext, scope: Scope) -> None:
        raise KeyboardInterrupt

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 1000})

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        return None

    async def main() -> None:
        scope: Scope = {"type": "websocket", "path": "/ws", "headers": []}
        with pytest.raises(KeyboardInterrupt):
            await WebSocketCloseMiddleware(app, on_close=interrupting)(scope, receive, send)
        assert current_close_context() is None

    asyncio.run(main())


def test_server_overrides_what_detection_found() -> None:
    # Detection found uvicorn-wsproto and its protocol object; server="hypercorn" names another
    # entry: its quirks apply, and no probe reads the other server's object.
    found = (SERVERS["uvicorn-wsproto"], object())

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        return None

    connection = _Connection(found, SERVERS["hypercorn"], "1.1", receive, send, ())
    assert connection.server == "hypercorn"
    assert connection._subject is None


class _Returned:
    """What an app returns when it should not (servers judge it: uvicorn closes the connection)."""


@pytest.mark.parametrize("life", ["http", "websocket client close", "websocket app close", "nested instance"])
def test_the_apps_return_value_is_the_middlewares(life: str) -> None:
    returned = _Returned()
    inbound: list[Message] = [{"type": "websocket.disconnect", "code": 1000}, {"type": "websocket.connect"}]

    async def app(scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            if life == "websocket app close":
                await send({"type": "websocket.close", "code": 1000})
            else:
                await receive()
        return returned

    async def receive() -> Message:
        return inbound.pop()

    async def send(message: Message) -> None:
        return None

    middleware: Any = WebSocketCloseMiddleware(app)
    if life == "nested instance":
        middleware = WebSocketCloseMiddleware(middleware)
    scope: Scope = {"type": "http" if life == "http" else "websocket", "path": "/", "headers": []}
    assert asyncio.run(middleware(scope, receive, send)) is returned
    if life != "http":
        context = scope["asgi_ws_close"]
        assert (context.outcome, context.code, context.error) == (
            ("app_closed", 1000, None) if life == "websocket app close" else ("client_closed", 1000, None)
        )


def test_a_close_on_error_interrupted_by_cancellation_still_ends_the_record() -> None:
    # close_on_error sends 1011 for an app that raised; the server's send is cancelled (as at
    # shutdown): the cancellation propagates, and the record ends as the app's error, not open.
    error = ValueError("boom")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise error

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        if message["type"] == "websocket.close":
            raise asyncio.CancelledError

    scope: Scope = {"type": "websocket", "path": "/ws", "headers": []}
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(WebSocketCloseMiddleware(app, close_on_error=True)(scope, receive, send))
    context = scope["asgi_ws_close"]
    assert context.finished and context.error is error
    assert (context.state.name, context.outcome, context.clean) == ("CLOSED", "app_error", False)
