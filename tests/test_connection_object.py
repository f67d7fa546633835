"""The middleware's per-connection object (issue 17): one object that is the tracker, the
context and the relay, the same facts as a stand-alone CloseTracker, and nothing of the
server's kept once the app's call has ended."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware, get_close_context
from asgi_ws_close._middleware import _Connection, _CountingConnection, _open
from asgi_ws_close._servers import GENERIC, _opaque, locate_server
from asgi_ws_close._tracker import CloseTracker
from asgi_ws_close._types import Message, Receive, Scope, Send

CLOCKS = {"opened_at", "closed_at", "duration"}


async def _noop_receive() -> Message:
    return {"type": "websocket.connect"}


async def _noop_send(message: Message) -> None:
    return None


def _facts(context: CloseContext) -> dict[str, Any]:
    return {key: value for key, value in context.to_dict().items() if key not in CLOCKS}


def test_a_connection_starts_with_the_facts_of_a_tracker() -> None:
    # The middleware makes its connections with _open, which sets what _Tracking._begin sets,
    # inline: they must not drift apart. (The classes' own __init__ calls _begin.)
    for counting in (False, True):
        middleware = WebSocketCloseMiddleware(_noop_app, count_messages=counting)
        scope: Scope = {"type": "websocket", "http_version": "1.1"}
        made = (
            _open(middleware, scope, _noop_receive, _noop_send),
            middleware._connection((GENERIC, None), None, "1.1", _noop_receive, _noop_send, ()),
        )
        tracker = CloseTracker(count_messages=counting, http_version="1.1")
        for connection in made:
            assert type(connection) is (_CountingConnection if counting else _Connection)
            assert _facts(connection) == _facts(CloseContext._of(tracker))
            assert connection.finished is tracker.finished is False
            assert connection.abnormal is tracker.abnormal is False
            assert isinstance(connection.opened_at, float) and connection.duration is None


async def _noop_app(scope: Scope, receive: Receive, send: Send) -> None:
    return None


class _Server:
    """A server's connection object: it holds the scope, as uvicorn's protocols do."""

    __slots__ = ("messages", "scope")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.messages: list[Message] = [
            {"type": "websocket.disconnect", "code": 4001, "reason": "bye"},
            {"type": "websocket.connect"},
        ]

    async def receive(self) -> Message:
        return self.messages.pop()

    async def send(self, message: Message) -> None:
        return None


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await receive()


def test_the_context_is_the_connection_and_lets_go_of_the_server_at_the_end() -> None:
    seen: list[CloseContext] = []
    app = WebSocketCloseMiddleware(_echo, on_close=lambda context, scope: seen.append(context))
    scope: Scope = {"type": "websocket", "path": "/ws"}
    server = _Server(scope)
    asyncio.run(app(scope, server.receive, server.send))
    context = get_close_context(scope)
    assert seen == [context] and isinstance(context, _Connection)
    assert (context.initiator, context.code, context.reason, context.outcome) == (
        "client",
        4001,
        "bye",
        "client_closed",
    )
    # No reference from the context (in the scope) to the server's objects: no cycle through
    # the scope, so reference counting frees the server's connection object.
    assert server not in gc.get_referents(context)
    assert not any(getattr(ref, "__self__", None) is server for ref in gc.get_referents(context))


def test_the_app_gets_an_error_from_its_callables_after_its_call_ended() -> None:
    kept: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kept.extend((receive, send))
        await _echo(scope, receive, send)

    scope: Scope = {"type": "websocket", "path": "/ws"}
    server = _Server(scope)
    asyncio.run(WebSocketCloseMiddleware(app)(scope, server.receive, server.send))
    receive, send = kept
    for late in (receive(), send({"type": "websocket.send", "text": "late"})):
        try:
            asyncio.run(late)
        except RuntimeError as exc:
            assert "after the app's call ended" in str(exc)
        else:  # pragma: no cover - the assertion's message says what went wrong
            raise AssertionError("a call after the end reached the server")


def test_a_send_searched_once_for_nothing_is_not_searched_again() -> None:
    class Opaque:
        __slots__ = ()

        async def send(self, message: Message) -> None:
            return None

    first = locate_server(Opaque().send, {"type": "websocket"})
    assert first == (GENERIC, None)
    assert (Opaque, Opaque.send) in _opaque
    assert locate_server(Opaque().send, {"type": "websocket"}) == first

    # A closure can hide a server's send: never cached.
    def closure(inner: Send) -> Send:
        async def wrapped(message: Message) -> None:
            await inner(message)

        return wrapped

    wrapped = closure(Opaque().send)
    locate_server(wrapped)
    assert wrapped not in _opaque
