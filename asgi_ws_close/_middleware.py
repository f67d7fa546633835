"""The ASGI adapter: feeds a CloseTracker from the messages it forwards, unchanged."""

from __future__ import annotations

import asyncio
import atexit
import gc
import inspect
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import Token
from typing import Any, Literal

from ._codes import CloseCode, close_violation, is_valid_close_code, truncate_reason
from ._context import SCOPE_KEY, _current
from ._record import CloseContext, OnClose
from ._servers import GENERIC, SERVERS, UNREADABLE, ServerQuirks, Wire, locate_server
from ._tracker import (
    _ACCEPTED,
    _CLOSED_BY_APP_EXIT,
    _CLOSING_BY_APP,
    CLOSED,
    CLOSING,
    CONNECTING,
    COUNTER_SLOTS,
    FACT_SLOTS,
    OPEN,
    _close_of,
    _code_of,
    _reason_of,
    _Tracking,
)
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

    For every ``websocket`` scope it puts a `CloseContext` at
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
            ``"raise"`` raises `ValueError` at the app's ``send()``, naming the rule
            broken, and sends nothing. The context keeps what the app asked for
            (``requested``) and what went out (``sent``).
        close_on_error: When the app raises after accept without having closed, send
            ``websocket.close`` with 1011 before re-raising, so the client sees 1011 on every
            server (uvicorn otherwise drops the TCP connection: the client sees 1006).
        reject_with_close_code: When the app closes before accept, accept and at once close
            with its code and reason, so that the client (a browser) sees the app's code
            instead of HTTP 403 (which browsers report as 1006). The context still says
            REJECTED.
        count_messages: Count the ``websocket.receive`` and ``websocket.send`` messages in
            ``messages_received`` / ``messages_sent``. Off by default, when both are ``None``:
            the two counters would cost more per message than all the rest of the
            middleware (see benchmarks/README.md).
        server: The name of the server's entry in the quirks table (``"uvicorn-wsproto"``,
            ``"hypercorn"``, ..., or ``"generic"``), for when it cannot be detected: by
            default it is told by the ``send`` callable the server hands over, which another
            middleware wrapping ``send`` outside this one hides.

    Raises:
        TypeError: ``app`` or a hook is not callable, a flag is not a bool, or ``server`` is
            not a string.
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
        count_messages: bool = False,
        server: str | None = None,
    ) -> None:
        _check_options(
            app,
            close_on_error=close_on_error,
            reject_with_close_code=reject_with_close_code,
            count_messages=count_messages,
            server=server,
        )
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
        self.count_messages = count_messages
        self.server = server
        self._quirks: ServerQuirks | None = None
        if server is not None:
            known = {GENERIC.name: GENERIC, **SERVERS}
            if server not in known:
                raise ValueError(f"server must be one of {', '.join(map(repr, known))}, not {server!r}")
            self._quirks = known[server]
        # Decided once, not per connection or message.
        self._policies: WebSocketCloseMiddleware | None = (
            self if invalid_close != "pass" or reject_with_close_code else None
        )
        connection: type[_Connection] = _CountingConnection if count_messages else _Connection
        if self._policies is not None:
            # The connections of a middleware with policies know it by their class: no slot
            # for it in every connection of every other middleware.
            connection = type(connection.__name__, (connection,), {"__slots__": (), "_policies": self})
        self._connection = connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The app's return value is returned too, on every path: servers judge it (uvicorn
        # closes the connection of an app that returns something).
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)

        context = scope.get(SCOPE_KEY)
        if context is not None and isinstance(context, CloseContext):
            # An outer instance already tracks this connection: share its context, and let
            # it run our hooks after its own, once the connection has ended. Our policies do
            # not apply: the outer instance's own do.
            context._hooks = (*context._hooks, *self.hooks)
            return await self.app(scope, receive, send)

        # Few locals, and short expressions: each local, and each slot of the value stack, is
        # 8 bytes of every open connection's frame.
        context = _open(self, scope, receive, send)
        scope[SCOPE_KEY] = context
        # Set now, reset at the end with its token (kept by the context, not in this frame):
        # resetting a variable the task had not set costs less than setting it back.
        context._token = _current.set(context)
        try:
            # (Returned from here, the app's value waits on the value stack while the finally
            # clause runs: no local for it.)
            return await self.app(scope, context.receive_with_tracking, context.send_with_tracking)
        except GeneratorExit:
            # The app's coroutine is being closed, not resumed: its event loop is gone (or the
            # process is exiting). Nothing can be awaited now; record the end as the server's.
            _deliver_at_exit(context, scope)
            raise
        except BaseException:
            # (Not bound to a local: _app_raised reads it. A local is 8 bytes of every frame.)
            await _app_raised(self, context)
            raise
        finally:
            # Not finished: the app returned (the handlers above finish the record whatever
            # happens in them).
            if context.finished:
                pass
            elif context.state >= CLOSED:
                # It ended before the app returned: app_exited() would record only this (and
                # its probe would read nothing: the connection does not look open).
                context.finished = True
            elif context._subject is not None:
                context.app_exited(wire=context.wire())
            elif context.state is CLOSING:
                # The app closed, then returned (the common case of an app's close): what
                # app_exited() records for it, inline. Its close stands.
                context.state = _CLOSED_BY_APP_EXIT
                context._ends = (_monotonic(), _wall_clock())
                context.initiator = "app"
                context.finished = True
            else:
                context.app_exited()
            # Let go of the server's objects (see _Connection), inline.
            context._receive = _unattached_receive
            context._send = _unattached_send
            context._subject = None
            if not context._hooks:
                # _reset(context), inline: a call less.
                try:
                    _current.reset(context._token)
                except (ValueError, RuntimeError):
                    _set_back(context._token)
                context._token = None
            elif _call_hooks(context, scope):
                # An async hook: _call_hooks left the coroutine that awaits it (and runs the
                # rest, then resets) in the detached _subject slot: no local for it, 8 bytes
                # of every open connection's frame.
                await context._subject


def _open(middleware: WebSocketCloseMiddleware, scope: Scope, receive: Receive, send: Send) -> _Connection:
    # The connection's object, made here rather than in __call__ (the arguments' expression
    # would deepen __call__'s value stack, 8 bytes a slot in every open connection's frame),
    # and without calling its class: object.__new__ and the stores of _Connection.__init__,
    # inline, cost less than the class's call. Keep them alike (the tests check that a
    # connection made here starts as a CloseTracker does).
    quirks, subject = locate_server(send, scope)
    only = middleware._quirks
    if only is not None and only is not quirks:
        # server= names another entry: what was found is not what its probe would read.
        quirks, subject = only, None
    context = _new(middleware._connection)
    context._receive = receive
    context._send = send
    context._subject = subject if quirks.probe is not None else None
    context._hooks = middleware.hooks
    if middleware.count_messages:
        context.messages_received = 0
        context.messages_sent = 0
    # What _Tracking._begin does, inline.
    context.quirks = quirks
    context.http_version = scope.get("http_version")
    context.state = CONNECTING
    context.initiator = None
    context._close = None
    context._rare = None
    context.received_then_sent = None
    context._clean = True
    context.error = None
    context._outcome = None
    context.opened_at = _wall_clock()
    context._started = _monotonic()
    context._ends = None
    context.finished = False
    return context


_new = object.__new__


async def _app_raised(middleware: WebSocketCloseMiddleware, context: _Connection) -> None:
    # The app raised (or was cancelled): close for it if asked to, and record how it ended.
    # Called while the exception is handled, before any await: sys.exc_info() is the app's.
    exc = sys.exc_info()[1]
    assert exc is not None
    try:
        if middleware.close_on_error and context.state is OPEN and not _is_cancellation(exc):
            # (context._send is still the server's send: it is let go of after this.)
            await _close_for_error(context, context._send)
    finally:
        # Recorded even if that close is interrupted (cancelled while it is sent).
        _app_ended(context, exc, context.wire())


def _call_hooks(context: _Connection, scope: Scope) -> bool:
    # The on_close hooks, in order, then the context variable reset (the hooks see it set).
    # Plain hooks are called here, a call each, no coroutine. From the first hook that returns
    # an awaitable on, a coroutine awaits it, runs the rest and resets: it is left in
    # context._subject for the middleware to await (True).
    hooks = context._hooks
    index = 0
    try:
        for hook in hooks:
            index += 1
            try:
                result = hook(context, scope)
                if result is not None and inspect.isawaitable(result):
                    context._subject = _finish_hooks(context, scope, hooks[index:], hook, result)
                    return True
            except Exception:
                # The hook's failure is the hook's: never the server's, the app's or another
                # hook's.
                logger.exception("asgi_ws_close: on_close hook %r raised", hook)
    except BaseException:
        _reset(context)
        raise
    # _reset(context), inline (the token is set: this runs once, from __call__): a call less.
    try:
        _current.reset(context._token)  # type: ignore[arg-type]
    except (ValueError, RuntimeError):
        _set_back(context._token)  # type: ignore[arg-type]
    context._token = None
    return False


async def _finish_hooks(
    context: _Connection, scope: Scope, hooks: tuple[OnClose, ...], hook: OnClose, pending: Awaitable[None]
) -> None:
    # The rest of _call_hooks, from the first hook that returned an awaitable.
    context._subject = None
    try:
        try:
            await pending
        except Exception:
            logger.exception("asgi_ws_close: on_close hook %r raised", hook)
        for hook in hooks:
            try:
                result = hook(context, scope)
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("asgi_ws_close: on_close hook %r raised", hook)
    finally:
        _reset(context)


def _reset(context: _Connection) -> None:
    # The context variable back to what it was before the middleware set it; the token let go
    # of (it holds the task's context).
    token = context._token
    if token is None:  # pragma: no cover - defensive: every path resets once (__call__'s
        # finally, _call_hooks, _finish_hooks), but a second reset must never raise
        return
    context._token = None
    try:
        _current.reset(token)
    except (ValueError, RuntimeError):
        _set_back(token)


def _set_back(token: Token[CloseContext | None]) -> None:
    # Not in the context it was set in (the app's coroutine closed from outside its task, at
    # exit): set the variable back there, as the reset would have in its own context.
    _current.set(None if token.old_value is _UNSET else token.old_value)


# One object per connection, a _Connection, is its tracker, its context (what the scope and
# the hooks get) and its relay: the receive/send the app gets are its bound methods. In CPython
# that is the cheapest way to put code on the message path, in both time and memory (two
# closures and their cells cost about 0.6 kB a connection; one slotted object and two bound
# methods about 0.2 kB beyond the facts it keeps). While the app runs, the context in the
# scope refers to the server's callables (and the server's object to the scope): a reference
# cycle, which _detach breaks when the app's call ends, so that reference counting frees the
# connection (never the cyclic collector). Data messages (the hot path) cost a type check;
# every other message takes the slow path.


def _check_options(app: object, *, server: object, **flags: object) -> None:
    # Configuration errors surface when the app is built, each naming the fix, not as a
    # surprise on the first connection (a truthy "yes" would silently enable an option).
    if not callable(app):
        raise TypeError(
            f"WebSocketCloseMiddleware(app): app must be an ASGI application (a callable), "
            f"not {app!r} ({type(app).__name__}); with Starlette or FastAPI, use "
            "app.add_middleware(WebSocketCloseMiddleware, ...) instead"
        )
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, not {value!r} ({type(value).__name__})")
    if server is not None and not isinstance(server, str):
        raise TypeError(f"server must be a server's name (a str) or None, not {server!r} ({type(server).__name__})")


_UNSET = Token.MISSING
_monotonic = time.monotonic
_wall_clock = time.time


async def _unattached_receive() -> Message:
    raise RuntimeError("receive() called after the app's call ended: the connection is over")


async def _unattached_send(message: Message) -> None:
    raise RuntimeError(f"send() called after the app's call ended: the connection is over ({message!r:.60})")


class _Connection(_Tracking, CloseContext):
    """One connection: its tracker, its context and the relay of its messages, in one object."""

    __slots__ = (*FACT_SLOTS, "_receive", "_send", "_subject", "_token")

    # The clocks of the middleware's records: time.monotonic and time.time, read at the start
    # and at the end.
    _clock = staticmethod(time.monotonic)
    _wall_clock = staticmethod(time.time)
    # Not counted (see _CountingConnection).
    messages_received: int | None = None
    messages_sent: int | None = None
    # The middleware whose close policies apply (see WebSocketCloseMiddleware.__init__).
    _policies: WebSocketCloseMiddleware | None = None
    # The context variable's token while the app runs (set and reset by the middleware).
    _token: Token[CloseContext | None] | None
    # The server's connection object for its entry's probe, while the app runs (None: nothing
    # to read); after, the coroutine delivering async hooks, if any (see _call_hooks).
    _subject: Any

    def __init__(
        self,
        found: tuple[ServerQuirks, Any],
        only: ServerQuirks | None,
        http_version: str | None,
        receive: Receive,
        send: Send,
        hooks: tuple[OnClose, ...],
    ) -> None:
        # found: the server's entry and connection object (locate_server); only: the entry
        # named by server=, if any.
        quirks, subject = found
        if only is not None and only is not quirks:
            # server= names another entry: what was found is not what its probe would read.
            quirks, subject = only, None
        self._receive = receive
        self._send = send
        # The server's connection object, for its entry's probe (None: nothing to read).
        self._subject = subject if quirks.probe is not None else None
        # on_close hooks, this middleware's and those of nested instances that share it.
        self._hooks = hooks
        self._begin(quirks, http_version)

    @property
    def _tracker(self) -> _Connection:  # type: ignore[override]
        # The context's facts are its own.
        return self

    async def receive_with_tracking(self) -> Message:
        message = await self._receive()
        try:
            kind = message["type"]
        except Exception:  # not an ASGI message: the app's to judge, never ours to raise
            return message
        if kind == "websocket.disconnect":
            # (kind reused for the wire: a shorter value stack, 8 bytes of every idle frame.)
            kind = None if self._subject is None else self.wire(message)
            self._disconnect(message, kind)
        # websocket.connect changes nothing; unknown types are not ours to judge.
        return message

    def wire(self, message: Message | None = None) -> Wire | None:
        """What the server's connection object says, when its entry has a probe: read for a
        disconnect, and when the app ends while the connection looks open."""
        subject = self._subject
        if subject is None or (message is None and self.state is not OPEN):
            return None
        probe = self.quirks.probe
        assert probe is not None  # _subject is set only for an entry with a probe
        try:
            return probe(subject, message)
        except Exception:  # a server upgrade moved what the probe reads: unknown, never wrong
            return UNREADABLE

    def send_with_tracking(self, message: Message) -> Awaitable[None]:
        # A plain method (marked as a coroutine function below): a data message, or the
        # accept, is handed to the server's send() at once, and the app awaits the server's
        # own awaitable. No frame of ours on that path, so it costs less than a forwarding
        # coroutine; anything else goes through _forward, a coroutine.
        try:
            kind = message["type"]
        except Exception:  # the server will tell the app what is wrong with it
            kind = None
        if kind == "websocket.send" and self.state is OPEN:
            return self._send(message)
        if kind == "websocket.accept" and self.state is CONNECTING:
            # Recorded first, as every message is: nothing about it can fail that matters.
            # (The tracker's table's transition, applied here: a call less.)
            self.state = _ACCEPTED
            return self._send(message)
        if kind == "websocket.close" and self.state is OPEN and self._policies is None:
            # The app's close: recorded first (servers answer a close with a disconnect that
            # the app may receive before this send returns), then sent.
            # (What _Tracking._app_close records for an open connection, inline: two calls less.)
            self.state = _CLOSING_BY_APP
            code = message.get("code")
            reason = message.get("reason")
            self._close = (
                code if type(code) is int else _code_of(message, CloseCode.NORMAL_CLOSURE),
                reason if type(reason) is str else _reason_of(message),
            )
            self.initiator = "app"
            self._outcome = "app_closed"
            self.received_then_sent = False
            return self._sending_close(message)
        return self._forward(message, kind)

    async def _sending_close(self, message: Message) -> None:
        try:
            await self._send(message)
        except BaseException:
            self.send_failed(message)
            raise

    async def _forward(self, message: Message, kind: object) -> None:
        # The slow path: close, denial responses, data before accept or after the close,
        # anything unknown.
        if kind == "websocket.close" and self._policies is not None and self.state <= OPEN:
            await _police_close(self, self._send, self._policies, message)
            return
        # A close sent now is the connection's close, unless one was sent or received already.
        first = self.state < CLOSING
        # Record the app's intent first: servers answer a close with a disconnect that the
        # app may receive before this send returns.
        if first and kind == "websocket.close":
            self._app_close(message, message)
        else:
            self.send(message)
        try:
            await self._send(message)
        except BaseException:
            if first:
                self.send_failed(message)
            raise

    def _detach(self) -> None:
        # The app's call has ended: let go of the server's objects (see above).
        self._receive = _unattached_receive
        self._send = _unattached_send
        self._subject = None


class _CountingConnection(_Connection):
    """A `_Connection` that also counts the data messages (`count_messages=True`)."""

    # The two methods with a counter each, rather than one flag tested on every message of
    # every connection.
    __slots__ = COUNTER_SLOTS

    def __init__(self, *args: Any) -> None:
        self.messages_received = 0
        self.messages_sent = 0
        super().__init__(*args)

    async def receive_with_tracking(self) -> Message:
        message = await _Connection.receive_with_tracking(self)
        try:
            if message["type"] == "websocket.receive":
                self.messages_received += 1  # type: ignore[operator]
        except Exception:  # not an ASGI message: the app's to judge, never ours to raise
            pass
        return message

    def send_with_tracking(self, message: Message) -> Awaitable[None]:
        try:
            if message["type"] == "websocket.send" and self.state is OPEN:
                # Counted as handed to the server (the next line hands it over).
                self.messages_sent += 1  # type: ignore[operator]
        except Exception:  # the server will tell the app what is wrong with it
            pass
        return _Connection.send_with_tracking(self, message)


def _mark_coroutine_function(func: Callable[..., Any]) -> None:
    if sys.version_info >= (3, 12):
        inspect.markcoroutinefunction(func)
    else:  # what asyncio.iscoroutinefunction (and asgiref before 3.12) looks for
        func._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


# send() returns an awaitable, always: to callers that ask (inspect, asyncio, asgiref's
# async_to_sync, as Channels' sync consumers use), it is a coroutine function.
_mark_coroutine_function(_Connection.send_with_tracking)
_mark_coroutine_function(_CountingConnection.send_with_tracking)


async def _police_close(tracker: _Tracking, send: Send, middleware: WebSocketCloseMiddleware, message: Message) -> None:
    rejecting = tracker.state is CONNECTING
    outgoing = message
    # Only a close that goes on the wire is checked: before accept, the client gets HTTP 403
    # unless reject_with_close_code turns the close into a close frame.
    if (not rejecting or middleware.reject_with_close_code) and middleware.invalid_close != "pass":
        close = _close_of(message)
        violation = close_violation(close.code, close.reason)
        if violation is not None:
            if middleware.invalid_close == "raise":
                raise ValueError(f"{violation}; nothing was sent (invalid_close='raise')")
            outgoing = _fixed(message, close.code, close.reason)
    try:
        if rejecting and middleware.reject_with_close_code:
            # Complete the handshake so that the close frame can go out.
            tracker.rejected_with_close(outgoing, requested=message)
            await send({"type": "websocket.accept"})
        else:
            tracker.send(outgoing, requested=message)
        await send(outgoing)
    except BaseException:
        tracker.send_failed(outgoing)
        raise


def _fixed(message: Message, code: int, reason: str) -> Message:
    if not is_valid_close_code(code):
        code = FIXED_CODE_FOR_NO_STATUS if code == CloseCode.NO_STATUS_RCVD else FIXED_CODE_OTHERWISE
    # A new dict: the app's own message is never modified.
    return {**message, "code": int(code), "reason": truncate_reason(reason)}


async def _close_for_error(tracker: _Tracking, send: Send) -> None:
    close: Message = {"type": "websocket.close", "code": int(CloseCode.INTERNAL_ERROR), "reason": ""}
    tracker.closing_for_error(close)
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


def _app_ended(tracker: _Tracking, exc: BaseException | None, wire: Wire | None = None) -> None:
    """Tell the tracker how the app's call ended: returned (None), cancelled, or raised ``exc``.

    ``wire`` is what the server's connection object says when the app ended while the
    connection looked open (a disconnect the app never read).
    """
    if exc is None:
        tracker.app_exited(wire=wire)
    elif _is_cancellation(exc):
        tracker.app_cancelled(wire=wire)
    else:
        tracker.app_exited(exc, wire=wire)


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.CancelledError):
        return True
    # trio.Cancelled, without importing trio.
    cls = type(exc)
    return cls.__name__ == "Cancelled" and cls.__module__.startswith("trio")


def _deliver_at_exit(connection: _Connection, scope: Scope) -> None:
    # The app will never be resumed (daphne at shutdown, a closed event loop): end the record
    # as the server's, once, and run the hooks now, without an event loop of the app's.
    connection.server_exited(wire=connection.wire())
    hooks, connection._hooks = connection._hooks, ()  # never a second delivery, whatever runs later
    for hook in hooks:
        _call_hook_now(hook, connection, scope)


@atexit.register
def _flush_open() -> None:
    """At interpreter exit: a record, and its hooks, for every connection still open.

    Those are the connections still attached to their server (see `_Connection`), found in
    their scopes among the objects the garbage collector tracks: once, at exit, rather than
    registered and unregistered at every connection's start and end.
    """
    found = gc.get_objects()
    for scope in found:
        if type(scope) is dict and scope.get("type") == "websocket":
            connection = scope.get(SCOPE_KEY)
            if isinstance(connection, _Connection) and connection._receive is not _unattached_receive:
                _deliver_at_exit(connection, scope)


def _call_hook_now(hook: OnClose, context: CloseContext, scope: Scope) -> None:
    try:
        result = hook(context, scope)
        if inspect.isawaitable(result):
            _complete(result)
    except Exception:
        logger.exception("asgi_ws_close: on_close hook %r raised", hook)


def _complete(awaitable: Awaitable[None]) -> None:
    async def wait() -> None:
        await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop runs in this thread: a loop of our own finishes the hook
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(wait())
        finally:
            loop.close()
        return
    # Inside a running loop's callback (a coroutine closed by the garbage collector): the hook
    # gets one step, and is closed if it needs more.
    coroutine = wait()
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    logger.warning("asgi_ws_close: an async on_close hook could not finish: the event loop is gone")
