"""What users read: the live `CloseContext` and its frozen `CloseRecord`."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._codes import Close, CloseCode, explain
from ._tracker import CloseTracker, ConnectionState, _Tracking
from ._types import Initiator, Outcome, Scope

__all__ = ["CloseContext", "CloseRecord", "OnClose", "Outcome"]


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
    """How one WebSocket connection ended: a frozen copy of its `CloseContext`.

    Its fields are the record's one declaration: `CloseContext` reads the same names live,
    `CloseContext.snapshot` copies them, and `to_dict` renders them, all derived from this
    list (`dataclasses.fields(CloseRecord)`).
    """

    state: ConnectionState
    """CONNECTING, OPEN, CLOSING, CLOSED or REJECTED: the reliable "is it open?" check."""
    outcome: Outcome | None
    """How it ended, in one word; `None` until it has (or if its server cannot tell).

    One of `"client_closed"`, `"app_closed"`, `"rejected"`, `"app_error"`, `"dropped"`,
    `"server_timeout"`, `"server_shutdown"`, `"server_error"`: the low-cardinality field to
    group dashboards by (see the outcome table in the docs).
    """
    initiator: Initiator | None
    """Who started the end: `"client"`, `"app"`, `"server"`, or `None`.

    `"server"` means the ASGI server closed on its own (shutdown 1012, a protocol error it
    detected, a keepalive timeout, a cancelled app task); `None` means the transport was lost
    and nobody sent a close frame. `"app"` covers the app closing, rejecting, returning or
    raising.
    """
    code: int | None
    """The connection's close code, as `GetCloseStatus` gives it; `None` while open.

    The code of the close that ended the connection (the app's when it initiated, else the
    one received), or 1006 when it ended abnormally, without a close frame.
    """
    reason: str
    """The close reason that goes with `code`; `""` while open or if none."""
    clean: bool | None
    """Whether it closed cleanly, like `CloseEvent.wasClean`; `None` while open.

    False for a lost transport, a rejected handshake, an app that raised or ended without
    closing, and a close the server failed to send.
    """
    received: Close | None
    """The close status the server reported (or its connection object holds) as received.

    `None` when none was received as a close: the transport was lost (the code is then 1006),
    the app closed first (servers then report a status of their own making, not the peer's
    reply), or no disconnect was delivered.
    """
    sent: Close | None
    """The close the app sent with `websocket.close` (ASGI defaults: 1000 and `""`).

    It is what went to the server: under `invalid_close="fix"`, the repaired close.
    """
    received_then_sent: bool | None
    """The order of the close frames, as in `websockets`' `ConnectionClosed`.

    `True` when the client's close came first and the server answered it, `False` when our
    side's went first (the app's close, or the server's own, as at shutdown), `None` when no
    close frame was exchanged.
    """
    requested: Close | None
    """The close the app asked for; differs from `sent` only if a policy repaired it."""
    sends_after_close: int
    """Messages the app tried to send after its own close or after the connection ended.

    Each is an "Unexpected ASGI message 'websocket.send', after sending 'websocket.close'" (or
    `ClientDisconnected`) for the app: check `state` before sending instead.
    """
    error: BaseException | None
    """The exception that escaped the app (the middleware re-raises it unchanged)."""
    http_status: int | None
    """For a rejected handshake: 403 for close-before-accept, or the denial status."""
    opened_at: float
    """Wall-clock time (`time.time()`) when the connection reached the middleware."""
    closed_at: float | None
    """Wall-clock time (`time.time()`) when it ended; `None` until then."""
    duration: float | None
    """Monotonic seconds from `opened_at` to the end; `None` until closed."""
    messages_received: int | None
    """How many `websocket.receive` messages the app received.

    `None` unless the middleware counts them (`count_messages=True`; off by default, to keep
    the counters off the message path).
    """
    messages_sent: int | None
    """How many `websocket.send` messages the app handed to the server (`None`: not counted)."""
    server: str | None
    """The server whose reports were read, e.g. `"uvicorn-wsproto"`; `None` if not known.

    An unknown server's reports are read by the ASGI spec's rules (the `"generic"` entry).
    """
    http_version: str | None
    """The HTTP version of the WebSocket's upgrade, as the scope gives it: `"1.1"`, `"2"`
    (RFC 8441), `"3"` (RFC 9220); `None` if the server does not say."""
    unknown: frozenset[str]
    """The facts this connection's server could not report, by field name.

    For example `{"reason"}` when daphne or granian dropped the client's close reason, or
    `{"code", "reason", "received"}` when hypercorn reported a client close without its code.
    Those fields then say `None` (`""` for `reason`) rather than guess.
    """

    def __str__(self) -> str:
        return _describe(self)

    def to_dict(self) -> dict[str, Any]:
        """Return the record as a JSON-serialisable dict (plain ints, strs, floats, bools).

        Every field, in order, as plain JSON values; after `code`, its `code_name` and
        `code_explanation`.
        """
        out: dict[str, Any] = {}
        for name in FIELDS:
            value = getattr(self, name)
            out[name] = _plain(value)
            if name == "code":
                out["code_name"] = value.name if isinstance(value, CloseCode) else None
                out["code_explanation"] = None if value is None else explain(value)
        return out


#: The record's fields, in order: the one list that the context, the snapshot and the dict follow.
FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(CloseRecord))


def _plain(value: Any) -> Any:
    # A field's value as JSON: enums by name (state) or number (codes), closes and errors as
    # small dicts, sets sorted.
    if isinstance(value, ConnectionState):
        return value.name
    if isinstance(value, Close):
        return {"code": int(value.code), "reason": value.reason}
    if isinstance(value, BaseException):
        return {"type": type(value).__qualname__, "message": _message_of(value)}
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return value


if TYPE_CHECKING:
    # For type checkers, the context has the record's fields (read-only); at run time they
    # are properties made from the same declaration (below the class).
    _RecordFields = CloseRecord
else:
    _RecordFields = object


class CloseContext(_RecordFields):
    """How one WebSocket connection is ending or ended, updated live and read-only.

    It has every field of `CloseRecord`, with the same meaning, read as it is now: `state`,
    `outcome`, `initiator`, `code`, `reason`, `clean`, `received`, `sent`, ... .

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
    def server(self) -> str | None:
        """The server whose reports were read, e.g. `"uvicorn-wsproto"`; `None` if not known."""
        name = self._tracker.quirks.name
        return None if name == "generic" else name

    def snapshot(self) -> CloseRecord:
        """Return a frozen copy of the context as it is now."""
        return CloseRecord(*[getattr(self, name) for name in FIELDS])

    def to_dict(self) -> dict[str, Any]:
        """Return `snapshot` as a JSON-serialisable dict."""
        return self.snapshot().to_dict()

    def __str__(self) -> str:
        return _describe(self)

    def __repr__(self) -> str:
        return f"<CloseContext {_describe(self)}>"


def _reads_the_tracker(name: str, doc: str | None) -> property:
    def read(context: CloseContext) -> Any:
        return getattr(context._tracker, name)

    return property(read, doc=doc)


# The context's read-only view of each field, made from the record's declaration (a field
# with logic of its own, such as `server`, is defined in the class).
for _name in FIELDS:
    if _name not in CloseContext.__dict__:
        setattr(CloseContext, _name, _reads_the_tracker(_name, f"`CloseRecord.{_name}`, as it is now."))
del _name


class _View(CloseContext):
    """A `CloseContext` that is a view of a tracker made by hand (`CloseContext._of`)."""

    __slots__ = ("_tracker",)


#: A hook called once per connection, after it ended: ``hook(context, scope)``, plain or async.
OnClose = Callable[[CloseContext, Scope], "Awaitable[None] | None"]
