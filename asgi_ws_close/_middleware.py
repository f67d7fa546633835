"""The ASGI adapter: feeds a CloseTracker from the messages it forwards, unchanged."""

from __future__ import annotations

import asyncio
import inspect
import logging

from ._context import SCOPE_KEY, _current
from ._record import CloseContext, OnClose
from ._tracker import CloseTracker
from ._types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["WebSocketCloseMiddleware"]

logger = logging.getLogger("asgi_ws_close")


class WebSocketCloseMiddleware:
    """Record how each WebSocket connection ends, and expose it through the scope.

    For every ``websocket`` scope it puts a :class:`~asgi_ws_close.CloseContext` at
    ``scope[SCOPE_KEY]`` before the app runs, keeps it current from the messages that pass
    through, and calls ``on_close`` once the connection has ended and the app has returned
    or raised. Messages are forwarded unchanged, in order, with no extra awaits; ``http`` and
    ``lifespan`` scopes pass straight through.

    Args:
        app: The ASGI app to wrap.
        on_close: Called exactly once per WebSocket connection, rejected handshakes
            included, as ``on_close(context, scope)``; it may be a plain or an async
            callable. Its exceptions are logged on the ``asgi_ws_close`` logger and never
            reach the server or the app.

    Raises:
        TypeError: ``on_close`` is not callable.
    """

    def __init__(self, app: ASGIApp, *, on_close: OnClose | None = None) -> None:
        if on_close is not None and not callable(on_close):
            raise TypeError(f"on_close must be a callable taking (context, scope), not {type(on_close).__name__}")
        self.app = app
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return

        context = scope.get(SCOPE_KEY)
        if isinstance(context, CloseContext):
            # An outer instance already tracks this connection: share its context, and let
            # it run our hook after its own, once the connection has ended.
            if self.on_close is not None:
                context._hooks = (*context._hooks, self.on_close)
            await self.app(scope, receive, send)
            return

        tracker = _TrackedConnection(receive, send)
        context = CloseContext(tracker)
        scope[SCOPE_KEY] = context
        token = _current.set(context)
        try:
            await self.app(scope, tracker.receive_with_tracking, tracker.send_with_tracking)
        except BaseException as exc:
            if _is_cancellation(exc):
                tracker.app_cancelled()
            else:
                tracker.app_exited(exc)
            raise
        else:
            tracker.app_exited()
        finally:
            try:
                if self.on_close is not None:
                    await _call_hook(self.on_close, context, scope)
                for hook in context._hooks:
                    await _call_hook(hook, context, scope)
            finally:
                _current.reset(token)


class _TrackedConnection(CloseTracker):
    # The tracker of one connection, plus the server's receive/send: its bound methods are
    # what the app gets. Subclassing (rather than wrapping) keeps the hot path to one
    # attribute write per message.
    __slots__ = ("_receive", "_send")

    def __init__(self, receive: Receive, send: Send) -> None:
        super().__init__()
        self._receive = receive
        self._send = send

    async def receive_with_tracking(self) -> Message:
        message = await self._receive()
        try:
            kind = message["type"]
        except Exception:  # not an ASGI message: the app's to judge, never ours to raise
            return message
        if kind == "websocket.receive":
            self.messages_received += 1
        else:
            self.receive(message)
        return message

    async def send_with_tracking(self, message: Message) -> None:
        try:
            kind = message["type"]
        except Exception:  # the server will tell the app what is wrong with it
            kind = None
        if kind == "websocket.send":
            self.messages_sent += 1
            await self._send(message)
            return
        # Record the app's intent first: servers answer a close with a disconnect that the
        # app may receive before this send returns.
        self.send(message)
        try:
            await self._send(message)
        except BaseException:
            self.send_failed(message)
            raise


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.CancelledError):
        return True
    # trio.Cancelled, without importing trio.
    cls = type(exc)
    return cls.__name__ == "Cancelled" and cls.__module__.startswith("trio")


async def _call_hook(hook: OnClose, context: CloseContext, scope: Scope) -> None:
    try:
        result = hook(context, scope)
        if inspect.isawaitable(result):
            await result
    except Exception:
        # The hook's failure is the hook's: never the server's or the app's.
        logger.exception("asgi_ws_close: on_close hook %r raised", hook)
