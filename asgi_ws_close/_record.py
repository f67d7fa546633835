"""What users read: the live `CloseContext` and its frozen `CloseRecord`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._codes import Close, CloseCode, explain
from ._tracker import CloseTracker, ConnectionState, _Tracking
from ._types import Initiator, Outcome, Scope

__all__ = ["CloseContext", "CloseRecord", "OnClose", "Outcome"]


def _close_dict(close: Close | None) -> dict[str, Any] | None:
    if close is None:
        return None
    return {"code": int(close.code), "reason": close.reason}


_CLEANLINESS = {True: "clean", False: "not clean", None: "clean unknown"}


def _message_of(error: BaseException) -> str:
    # An exception's __str__ is the app's code: it must not break a hook that logs the record.
    try:
        return str(error)
    except Exception:
        return f"<unprintable {type(error).__qualname__}>"


def _describe(record: CloseRecord | CloseContext) -> str:
    state = record.state
    if state < ConnectionState.CLOSED:
        return state.name.lower()
    code = record.code
    # An ended connection has a code unless its server did not report it.
    status = "unknown" if code is None else str(Close(code, record.reason))
    who = record.initiator or "nobody"
    if state is ConnectionState.REJECTED:
        return f"rejected by the app (HTTP {record.http_status}); close code {status}"
    return f"closed by {who}: {status}, {_CLEANLINESS[record.clean]}"


@dataclass(frozen=True, slots=True)
class CloseRecord:
    """A frozen copy of a `CloseContext`, for logs, hooks and storage.

    The attributes mean what the `CloseContext` properties of the same names mean.
    """

    state: ConnectionState
    outcome: Outcome | None
    initiator: Initiator | None
    code: int | None
    reason: str
    clean: bool | None
    received: Close | None
    sent: Close | None
    received_then_sent: bool | None
    requested: Close | None
    sends_after_close: int
    error: BaseException | None
    http_status: int | None
    opened_at: float
    closed_at: float | None
    duration: float | None
    messages_received: int | None
    messages_sent: int | None
    server: str | None
    http_version: str | None
    unknown: frozenset[str]

    def __str__(self) -> str:
        return _describe(self)

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-serialisable dict (plain ints, strs, floats, bools)."""
        error = self.error
        return {
            "state": self.state.name,
            "outcome": self.outcome,
            "initiator": self.initiator,
            "code": None if self.code is None else int(self.code),
            "code_name": self.code.name if isinstance(self.code, CloseCode) else None,
            "code_explanation": None if self.code is None else explain(self.code),
            "reason": self.reason,
            "clean": self.clean,
            "received": _close_dict(self.received),
            "sent": _close_dict(self.sent),
            "received_then_sent": self.received_then_sent,
            "requested": _close_dict(self.requested),
            "sends_after_close": self.sends_after_close,
            "error": None if error is None else {"type": type(error).__qualname__, "message": _message_of(error)},
            "http_status": self.http_status,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "duration": self.duration,
            "messages_received": self.messages_received,
            "messages_sent": self.messages_sent,
            "server": self.server,
            "http_version": self.http_version,
            "unknown": sorted(self.unknown),
        }


class CloseContext:
    """How one WebSocket connection is ending or ended, updated live and read-only.

    One context exists per ``websocket`` scope; `WebSocketCloseMiddleware`
    puts it at ``scope[SCOPE_KEY]`` before the app runs. Read it with
    `get_close_context` or `current_close_context`.
    Its close properties are ``None`` until the connection has ended; take a
    `snapshot` to keep a copy that no longer changes.

    It answers the question IIS's ``IWebSocketContext::GetCloseStatus(code, reason)``
    answers, plus who initiated, the order of the close frames, whether the close was clean
    (as the browser's ``CloseEvent.wasClean``), handshake rejection, app errors and timing.
    """

    # No slot for _tracker: the middleware's contexts are their trackers (a property), and
    # the views made by _of keep theirs in a subclass's slot.
    __slots__ = ("__weakref__", "_hooks")

    # The middleware's own contexts are their trackers (one object per connection); this one
    # is a view of a tracker made by hand.
    _tracker: _Tracking
    # on_close hooks of nested middleware instances that share this context.
    _hooks: tuple[OnClose, ...]

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            "CloseContext is made by WebSocketCloseMiddleware, one per connection: read it with "
            "get_close_context(websocket), current_close_context() or in an on_close hook; in tests, "
            "asgi_ws_close.testing.capture_closes(app) collects the records"
        )

    @classmethod
    def _of(cls, tracker: CloseTracker) -> CloseContext:
        """A read-only view of ``tracker`` (the middleware's own contexts are their trackers)."""
        view = object.__new__(_View)
        view._tracker = tracker
        view._hooks = ()
        return view

    @property
    def state(self) -> ConnectionState:
        """CONNECTING, OPEN, CLOSING, CLOSED or REJECTED: the reliable "is it open?" check."""
        return self._tracker.state

    @property
    def outcome(self) -> Outcome | None:
        """How it ended, in one word; ``None`` until it has (or if its server cannot tell).

        One of ``"client_closed"``, ``"app_closed"``, ``"rejected"``, ``"app_error"``,
        ``"dropped"``, ``"server_timeout"``, ``"server_shutdown"``, ``"server_error"``: the
        low-cardinality field to group dashboards by (see the README's outcome table).
        """
        return self._tracker.outcome

    @property
    def http_version(self) -> str | None:
        """The HTTP version of the WebSocket's upgrade, as the scope gives it: ``"1.1"``,
        ``"2"`` (RFC 8441), ``"3"`` (RFC 9220); ``None`` if the server does not say."""
        return self._tracker.http_version

    @property
    def received(self) -> Close | None:
        """The close status the server reported in ``websocket.disconnect``.

        ``None`` when none was reported as a close: the transport was lost (the code is then
        1006), the app closed first (servers then report a status of their own making, not
        the peer's reply), or no disconnect was delivered.
        """
        return self._tracker.received

    @property
    def sent(self) -> Close | None:
        """The close the app sent with ``websocket.close`` (ASGI defaults: 1000 and ``""``).

        It is what went to the server: under ``invalid_close="fix"``, the repaired close.
        """
        return self._tracker.sent

    @property
    def requested(self) -> Close | None:
        """The close the app asked for; differs from `sent` only if a policy repaired it."""
        return self._tracker.requested

    @property
    def sends_after_close(self) -> int:
        """Messages the app tried to send after its own close or after the connection ended.

        Each is an "Unexpected ASGI message 'websocket.send', after sending 'websocket.close'"
        (or ``ClientDisconnected``) for the app: check `state` before sending instead.
        """
        return self._tracker.sends_after_close

    @property
    def received_then_sent(self) -> bool | None:
        """The order of the close frames, as in ``websockets``' ``ConnectionClosed``.

        ``True`` when the client's close came first and the server answered it, ``False`` when
        our side's went first (the app's close, or the server's own, as at shutdown), ``None``
        when no close frame was exchanged.
        """
        return self._tracker.received_then_sent

    @property
    def initiator(self) -> Initiator | None:
        """Who started the end: ``"client"``, ``"app"``, ``"server"``, or ``None``.

        ``"server"`` means the ASGI server closed on its own (shutdown 1012, a protocol error
        it detected, a cancelled app task); ``None`` means the transport was lost and nobody
        sent a close frame. ``"app"`` covers the app closing, rejecting, returning or raising.
        """
        return self._tracker.initiator

    @property
    def code(self) -> int | None:
        """The connection's close code, as ``GetCloseStatus`` gives it; ``None`` while open.

        The code of the close that ended the connection (the app's when it initiated, else
        the one received), or 1006 when it ended abnormally, without a close frame.
        """
        return self._tracker.code

    @property
    def reason(self) -> str:
        """The close reason that goes with `code`; ``""`` while open or if none."""
        return self._tracker.reason

    @property
    def clean(self) -> bool | None:
        """Whether it closed cleanly, like ``CloseEvent.wasClean``; ``None`` while open.

        False for a lost transport, a rejected handshake, an app that raised or ended
        without closing, and a close the server failed to send.
        """
        return self._tracker.clean

    @property
    def error(self) -> BaseException | None:
        """The exception that escaped the app (the middleware re-raises it unchanged)."""
        return self._tracker.error

    @property
    def http_status(self) -> int | None:
        """For a rejected handshake: 403 for close-before-accept, or the denial status."""
        return self._tracker.http_status

    @property
    def opened_at(self) -> float:
        """Wall-clock time (``time.time()``) when the connection reached the middleware."""
        return self._tracker.opened_at

    @property
    def closed_at(self) -> float | None:
        """Wall-clock time (``time.time()``) when it ended; ``None`` until then."""
        return self._tracker.closed_at

    @property
    def duration(self) -> float | None:
        """Monotonic seconds from `opened_at` to the end; ``None`` until closed."""
        return self._tracker.duration

    @property
    def messages_received(self) -> int | None:
        """How many ``websocket.receive`` messages the app received.

        ``None`` unless the middleware counts them (``count_messages=True``; off by default,
        to keep the counters off the message path).
        """
        return self._tracker.messages_received

    @property
    def messages_sent(self) -> int | None:
        """How many ``websocket.send`` messages the app handed to the server (``None``: not counted)."""
        return self._tracker.messages_sent

    @property
    def server(self) -> str | None:
        """The server whose reports were read, e.g. ``"uvicorn-wsproto"``; ``None`` if not known.

        An unknown server's reports are read by the ASGI spec's rules (the ``"generic"`` entry).
        """
        name = self._tracker.quirks.name
        return None if name == "generic" else name

    @property
    def unknown(self) -> frozenset[str]:
        """The facts this connection's server could not report, by property name.

        For example ``{"reason"}`` when daphne, granian or hypercorn dropped the client's close
        reason, or ``{"code", "reason", "clean", "initiator", ...}`` when hypercorn reported a
        client close that cannot be told from a lost connection. Those properties then say
        ``None`` (``""`` for `reason`) rather than guess.
        """
        return self._tracker.unknown

    def snapshot(self) -> CloseRecord:
        """Return a frozen copy of the context as it is now."""
        t = self._tracker
        return CloseRecord(
            state=t.state,
            outcome=t.outcome,
            initiator=t.initiator,
            code=t.code,
            reason=t.reason,
            clean=t.clean,
            received=t.received,
            sent=t.sent,
            received_then_sent=t.received_then_sent,
            requested=t.requested,
            sends_after_close=t.sends_after_close,
            error=t.error,
            http_status=t.http_status,
            opened_at=t.opened_at,
            closed_at=t.closed_at,
            duration=t.duration,
            messages_received=t.messages_received,
            messages_sent=t.messages_sent,
            server=self.server,
            http_version=t.http_version,
            unknown=t.unknown,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return `snapshot` as a JSON-serialisable dict."""
        return self.snapshot().to_dict()

    def __str__(self) -> str:
        return _describe(self)

    def __repr__(self) -> str:
        return f"<CloseContext {_describe(self)}>"


class _View(CloseContext):
    """A `CloseContext` that is a view of a tracker made by hand (`CloseContext._of`)."""

    __slots__ = ("_tracker",)


#: A hook called once per connection, after it ended: ``hook(context, scope)``, plain or async.
OnClose = Callable[[CloseContext, Scope], "Awaitable[None] | None"]
