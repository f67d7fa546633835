"""The ASGI adapter: feeds a CloseTracker from the messages it forwards, unchanged."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from typing import Literal

from ._codes import CloseCode, close_violation, is_valid_close_code, truncate_reason
from ._context import SCOPE_KEY, _current
from ._record import CloseContext, OnClose
from ._servers import GENERIC, SERVERS, ServerQuirks, detect_server
from ._tracker import CONNECTING, OPEN, CloseTracker, _close_of
from ._types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["InvalidClosePolicy", "WebSocketCloseMiddleware"]

logger = logging.getLogger("asgi_ws_close")

#: What to do with a ``websocket.close`` from the app that RFC 6455 does not allow on the wire.
InvalidClosePolicy = Literal["pass", "fix", "raise"]
_INVALID_CLOSE_POLICIES = ("pass", "fix", "raise")

#: Under ``invalid_close="fix"``: the code that replaces an invalid one, 1000 for "no status"
#: (1005: the app meant a plain close), 1011 for anything else (the app is in error).
FIXED_CODE_FOR_NO_STATUS = CloseCode.NORMAL_CLOSURE
FIXED_CODE_OTHERWISE = CloseCode.INTERNAL_ERROR


class WebSocketCloseMiddleware:
    """Record how each WebSocket connection ends, and expose it through the scope.

    For every ``websocket`` scope it puts a :class:`~asgi_ws_close.CloseContext` at
    ``scope[SCOPE_KEY]`` before the app runs, keeps it current from the messages that pass
    through, and calls the ``on_close`` hooks once the connection has ended and the app has
    returned or raised. With the default options, messages are forwarded unchanged, in
    order, with no extra awaits; ``http`` and ``lifespan`` scopes pass straight through.

    Args:
        app: The ASGI app to wrap.
        on_close: A hook, or a sequence of hooks, each called exactly once per WebSocket
            connection, rejected handshakes included, as ``hook(context, scope)``, plain or
            async, in order, after the connection ended and never on the message path. A
            hook's exception is logged on the ``asgi_ws_close`` logger and reaches neither
            the server, nor the app, nor the other hooks.
        invalid_close: What to do when the app sends a close that RFC 6455 does not allow on
            the wire (a code outside 1000-1003, 1007-1014, 3000-4999, or a reason over 123
            bytes of UTF-8): ``"pass"`` forwards it unchanged (the server then drops, rewrites
            or raises, depending on the server); ``"fix"`` cuts the reason on a character
            boundary and replaces the code (1005 by 1000, anything else by 1011);
            ``"raise"`` raises :exc:`ValueError` at the app's ``send()``, naming the rule
            broken, and sends nothing. The context keeps what the app asked for
            (``requested``) and what went out (``sent``).
        close_on_error: When the app raises after accept without having closed, send
            ``websocket.close`` with 1011 before re-raising, so the client sees 1011 on every
            server (uvicorn otherwise drops the TCP connection: the client sees 1006).
        reject_with_close_code: When the app closes before accept, accept and at once close
            with its code and reason, so that the client (a browser) sees the app's code
            instead of HTTP 403 (which browsers report as 1006). The context still says
            REJECTED.
        server: The name of the server's entry in the quirks table (``"uvicorn-wsproto"``,
            ``"hypercorn"``, ..., or ``"generic"``), for when it cannot be detected: by
            default it is told by the ``send`` callable the server hands over, which another
            middleware wrapping ``send`` outside this one hides.

    Raises:
        TypeError: a hook is not callable.
        ValueError: ``invalid_close`` is not one of "pass", "fix", "raise", or ``server`` is
            not a known name.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        on_close: OnClose | Sequence[OnClose] | None = None,
        invalid_close: InvalidClosePolicy = "pass",
        close_on_error: bool = False,
        reject_with_close_code: bool = False,
        server: str | None = None,
    ) -> None:
        self.app = app
        self.hooks = _hooks_of(on_close)
        if invalid_close not in _INVALID_CLOSE_POLICIES:
            raise ValueError(
                f"invalid_close must be one of 'pass', 'fix' or 'raise', not {invalid_close!r}: "
                "'pass' forwards the app's close unchanged, 'fix' repairs it, 'raise' refuses it"
            )
        self.invalid_close: InvalidClosePolicy = invalid_close
        self.close_on_error = close_on_error
        self.reject_with_close_code = reject_with_close_code
        self.server = server
        self._quirks: ServerQuirks | None = None
        if server is not None:
            known = {GENERIC.name: GENERIC, **SERVERS}
            if server not in known:
                raise ValueError(f"server must be one of {', '.join(map(repr, known))}, not {server!r}")
            self._quirks = known[server]
        # Whether any close needs more than recording: decided once, not per message.
        self._has_close_policy = invalid_close != "pass" or reject_with_close_code

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return

        context = scope.get(SCOPE_KEY)
        if isinstance(context, CloseContext):
            # An outer instance already tracks this connection: share its context, and let
            # it run our hooks after its own, once the connection has ended. Our policies do
            # not apply: the outer instance's own do.
            context._hooks = (*context._hooks, *self.hooks)
            await self.app(scope, receive, send)
            return

        quirks = self._quirks or detect_server(send, scope)
        tracker = (
            _TrackedConnection(receive, send, quirks, self)
            if self._has_close_policy
            else _Tracked(receive, send, quirks)
        )
        context = CloseContext(tracker)
        context._hooks = self.hooks
        scope[SCOPE_KEY] = context
        token = _current.set(context)
        try:
            await self.app(scope, tracker.receive_with_tracking, tracker.send_with_tracking)
        except BaseException as exc:
            if _is_cancellation(exc):
                tracker.app_cancelled()
            else:
                if self.close_on_error and tracker.state is OPEN:
                    await _close_for_error(tracker, send)
                tracker.app_exited(exc)
            raise
        else:
            tracker.app_exited()
        finally:
            try:
                for hook in context._hooks:
                    await _call_hook(hook, context, scope)
            finally:
                _current.reset(token)


class _Tracked(CloseTracker):
    # The tracker of one connection, plus the server's receive/send: its bound methods are
    # what the app gets. Subclassing (rather than wrapping) keeps the hot path to one
    # attribute write per message.
    __slots__ = ("_receive", "_send")

    def __init__(self, receive: Receive, send: Send, quirks: ServerQuirks) -> None:
        super().__init__(quirks=quirks)
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
        await self._forward(message, kind)

    async def _forward(self, message: Message, kind: object) -> None:
        # Record the app's intent first: servers answer a close with a disconnect that the
        # app may receive before this send returns.
        self.send(message)
        try:
            await self._send(message)
        except BaseException:
            self.send_failed(message)
            raise


class _TrackedConnection(_Tracked):
    # The same, for a middleware with close policies: only websocket.close takes a detour.
    __slots__ = ("_middleware",)

    def __init__(
        self, receive: Receive, send: Send, quirks: ServerQuirks, middleware: WebSocketCloseMiddleware
    ) -> None:
        super().__init__(receive, send, quirks)
        self._middleware = middleware

    async def _forward(self, message: Message, kind: object) -> None:
        if kind != "websocket.close" or self.state > OPEN:
            await super()._forward(message, kind)
            return
        middleware = self._middleware
        rejecting = self.state is CONNECTING
        if rejecting and not middleware.reject_with_close_code:
            # The close never reaches the wire (the client gets HTTP 403): nothing to police.
            await super()._forward(message, kind)
            return
        outgoing = message
        if middleware.invalid_close != "pass":
            close = _close_of(message)
            violation = close_violation(close.code, close.reason)
            if violation is not None:
                if middleware.invalid_close == "raise":
                    raise ValueError(f"{violation}; nothing was sent (invalid_close='raise')")
                outgoing = _fixed(message, close.code, close.reason)
        if not rejecting:
            self.send(outgoing, requested=message)
            try:
                await self._send(outgoing)
            except BaseException:
                self.send_failed(outgoing)
                raise
            return
        # reject_with_close_code: complete the handshake so that the close frame can go out.
        self.rejected_with_close(outgoing, requested=message)
        try:
            await self._send({"type": "websocket.accept"})
            await self._send(outgoing)
        except BaseException:
            self.send_failed(outgoing)
            raise


def _fixed(message: Message, code: int, reason: str) -> Message:
    if not is_valid_close_code(code):
        code = FIXED_CODE_FOR_NO_STATUS if code == CloseCode.NO_STATUS_RCVD else FIXED_CODE_OTHERWISE
    # A new dict: the app's own message is never modified.
    return {**message, "code": int(code), "reason": truncate_reason(reason)}


async def _close_for_error(tracker: CloseTracker, send: Send) -> None:
    close: Message = {"type": "websocket.close", "code": int(CloseCode.INTERNAL_ERROR), "reason": ""}
    tracker.send(close)
    try:
        await send(close)
    except Exception:
        # The connection is already gone: the app's exception is the one that matters.
        tracker.send_failed(close)


def _hooks_of(on_close: OnClose | Sequence[OnClose] | None) -> tuple[OnClose, ...]:
    if on_close is None:
        return ()
    if callable(on_close):
        return (on_close,)
    hooks = tuple(on_close) if isinstance(on_close, Sequence) and not isinstance(on_close, str) else (on_close,)
    for hook in hooks:
        if not callable(hook):
            raise TypeError(
                f"on_close must be a callable taking (context, scope), or a sequence of them, not {type(hook).__name__}"
            )
    return hooks


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
        # The hook's failure is the hook's: never the server's, the app's or another hook's.
        logger.exception("asgi_ws_close: on_close hook %r raised", hook)
