"""Sans-I/O tracking of how one WebSocket connection ends.

Rule 1: every state transition lives in this file. The ASGI adapter (_middleware.py) and the
integrations only feed events in and read results out.

Rule 2: this file does no I/O. No awaits, no logging, no clock of its own (clocks are
injected), no knowledge of tasks or event loops. It takes ASGI message dicts, exactly as they
travel between server and app, so it can be driven by hand in tests.

Rule 3: nothing here raises because of what a peer or a server sent. ASGI messages are
read leniently: a missing ``code`` or a ``code`` of ``None`` means no status (1005), a
missing or ``None`` ``reason`` means ``""``, IntEnum codes become plain ints, and anything
unexpected is ignored rather than trusted.

How a connection ends is recorded websockets-style, in both directions: ``received`` (the
close status the server reported in ``websocket.disconnect``), ``sent`` (the close the app
sent in ``websocket.close``) and ``received_then_sent`` (their order), plus ``initiator``,
which ASGI itself never reports and which this tracker infers from the order of events.

Rule 4: a connection costs one object. The logic is `_Tracking`, a mixin without slots of
its own; `CloseTracker` adds the slots (and injected clocks), and the ASGI adapter's
per-connection object (`_middleware._Connection`) is a `_Tracking` too, so that tracker,
relay and context are one object. Closes are kept as their raw code and reason and made
into `Close` objects only when read (the same values, never a different answer).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ._codes import Close, CloseCode, as_close_code
from ._servers import GENERIC, SERVER_GENERATED_CODES, UNREADABLE, ServerQuirks, Wire, is_server_generated
from ._types import Initiator, Outcome

__all__ = ["CloseTracker", "ConnectionState"]


class ConnectionState(enum.IntEnum):
    """Where a WebSocket connection is in its life, as the app sees it."""

    #: The handshake is in progress: the app has not accepted or rejected it yet.
    CONNECTING = 0
    #: The app accepted the connection.
    OPEN = 1
    #: The app sent ``websocket.close``; the end of the connection is not confirmed yet.
    CLOSING = 2
    #: The connection ended after it was accepted (or the client left during the handshake).
    CLOSED = 3
    #: The app refused the handshake: ``websocket.close`` before accept, a denial response,
    #: or returning/raising before accept. The client got an HTTP response, not a WebSocket.
    REJECTED = 4


CONNECTING = ConnectionState.CONNECTING
OPEN = ConnectionState.OPEN
CLOSING = ConnectionState.CLOSING
CLOSED = ConnectionState.CLOSED
REJECTED = ConnectionState.REJECTED


class _Event(str, enum.Enum):  # str first: hashed (TRANSITIONS lookups) in C, not by Enum.__hash__
    ACCEPT = "accept"  # app sent websocket.accept
    CLOSE = "close"  # app sent websocket.close
    DENIAL = "denial"  # app sent websocket.http.response.start
    DISCONNECT = "disconnect"  # app received websocket.disconnect
    APP_EXIT = "app exit"  # the app returned or raised
    CANCEL = "cancel"  # the app's task was cancelled (by the server)


# The whole state machine: from-state -> event -> to-state. An event missing here does not
# change the state (e.g. a second websocket.close, or anything after the end).
TRANSITIONS: dict[ConnectionState, dict[_Event, ConnectionState]] = {
    CONNECTING: {
        _Event.ACCEPT: OPEN,
        # ASGI spec: close before accept -> "HTTP 403 error code (Forbidden)".
        _Event.CLOSE: REJECTED,
        _Event.DENIAL: REJECTED,
        # The client went away before the app answered the handshake.
        _Event.DISCONNECT: CLOSED,
        # Servers answer an app that returns or raises before accept with HTTP 500.
        _Event.APP_EXIT: REJECTED,
        _Event.CANCEL: CLOSED,
    },
    OPEN: {
        _Event.CLOSE: CLOSING,
        _Event.DISCONNECT: CLOSED,
        _Event.APP_EXIT: CLOSED,
        _Event.CANCEL: CLOSED,
    },
    CLOSING: {
        _Event.DISCONNECT: CLOSED,
        _Event.APP_EXIT: CLOSED,
        _Event.CANCEL: CLOSED,
    },
    CLOSED: {},
    REJECTED: {},
}

# The transitions the hot paths take without a lookup (_disconnect, app_exited, and the
# adapter's accept, which applies _ACCEPTED to a CONNECTING connection).
_ACCEPTED = TRANSITIONS[CONNECTING][_Event.ACCEPT]
_AFTER_DISCONNECT = {state: to[_Event.DISCONNECT] for state, to in TRANSITIONS.items() if _Event.DISCONNECT in to}
assert all(state >= CLOSED for state in _AFTER_DISCONNECT.values())
_AFTER_CLOSE = {state: to[_Event.CLOSE] for state, to in TRANSITIONS.items() if _Event.CLOSE in to}
assert all(state < CLOSED or state is REJECTED for state in _AFTER_CLOSE.values())

# Codes a disconnect's general path treats apart: no status, no close frame, and the codes a
# server may have generated (see _disconnect).
_NOT_PLAIN_CODES = frozenset({CloseCode.NO_STATUS_RCVD, CloseCode.ABNORMAL_CLOSURE, *SERVER_GENERATED_CODES})
_CLOSED_BY_APP_EXIT = TRANSITIONS[CLOSING][_Event.APP_EXIT]
_CLOSING_BY_APP = TRANSITIONS[OPEN][_Event.CLOSE]
_CLOSED_BY_DISCONNECT = _AFTER_DISCONNECT[OPEN]

# ASGI spec: a close before accept is answered with HTTP 403 (measured on every server in
# docs/servers.md). What an app that raises before accept gets is per server.
_HTTP_FORBIDDEN = 403


_NOTHING_UNKNOWN: frozenset[str] = frozenset()
_REASON_UNKNOWN = frozenset({"reason"})
_CLOSE_UNKNOWN = frozenset({"code", "reason", "received"})
_END_UNKNOWN = frozenset({"code", "reason", "clean", "received", "received_then_sent"})
_CLIENT_CLOSE_UNKNOWN = frozenset({"code", "reason", "clean", "initiator", "outcome", "received", "received_then_sent"})

# The outcome of a close the server made on its own, by its cause (Wire.cause).
_SERVER_OUTCOMES: dict[str | None, Outcome] = {
    "timeout": "server_timeout",
    "shutdown": "server_shutdown",
    "error": "server_error",
    None: "server_error",
}


def _type_of(message: Mapping[str, Any]) -> object:
    # Not a mapping with a "type": not an ASGI message, so nothing to record.
    if type(message) is dict:  # what every server and framework sends: skip the ABC check
        return message.get("type")
    try:
        return message["type"] if isinstance(message, Mapping) else None
    except KeyError:
        return None


def _code_of(message: Mapping[str, Any], default: int = CloseCode.NO_STATUS_RCVD) -> int:
    # 7.1.5: no status code in the close frame -> 1005. Daphne sends code=None for that.
    code = message.get("code")
    if type(code) is int:  # what servers and apps send: no conversion
        return code
    if code is None:
        return default
    try:
        return int(code)
    except Exception:  # whatever int() of a stranger's object raises, it is no code
        return default


def _reason_of(message: Mapping[str, Any]) -> str:
    reason = message.get("reason")
    if reason is None:
        return ""
    if isinstance(reason, str):
        return reason
    if isinstance(reason, (bytes, bytearray)):
        return bytes(reason).decode("utf-8", "replace")
    try:
        return str(reason)
    except Exception:  # an object whose __str__ raises is no reason
        return ""


def _close_of(message: Mapping[str, Any]) -> Close:
    # ASGI: websocket.close "code" defaults to 1000, "reason" to "".
    return Close(as_close_code(_code_of(message, default=CloseCode.NORMAL_CLOSURE)), _reason_of(message))


# Closes without a reason, made once: what most closes are, read without an allocation.
_WITHOUT_REASON: dict[int, Close] = {int(code): Close(code, "") for code in CloseCode}


def _close_from(code: int, reason: str) -> Close:
    """The `Close` of a raw code and reason, as it is read."""
    if not reason:
        close = _WITHOUT_REASON.get(code)
        if close is not None:
            return close
    return Close(as_close_code(code), reason)


_NO_SLOTS: tuple[str, ...] = ()

#: The slots of the facts `_Tracking` keeps, for the classes that hold them.
FACT_SLOTS = (
    "_clean",
    "_close",
    "_ends",
    "_outcome",
    "_rare",
    "_started",
    "error",
    "finished",
    "http_version",
    "initiator",
    "opened_at",
    "quirks",
    "received_then_sent",
    "state",
)

#: The message counters' slots, for the classes that count (`count_messages=True`).
COUNTER_SLOTS = ("messages_received", "messages_sent")


def _app_close_of(message: Mapping[str, Any]) -> tuple[int, str]:
    # The (code, reason) of the app's websocket.close: ASGI defaults them to 1000 and "".
    code = message.get("code")
    reason = message.get("reason")
    return (
        code if type(code) is int else _code_of(message, CloseCode.NORMAL_CLOSURE),
        reason if type(reason) is str else _reason_of(message),
    )


class _Rare:
    """The facts few connections have: made for those only (see `_Tracking._more`)."""

    __slots__ = ("abnormal", "http_status", "late_messages", "requested", "server_code", "unknown")

    def __init__(self) -> None:
        # The connection ended without any close frame: its close code is 1006.
        self.abnormal = False
        self.http_status: int | None = None
        # Messages the app handed to send() after its close or the connection's end.
        self.late_messages = 0
        # The close the app asked for, when a policy sent another one (None: the one sent).
        self.requested: Close | None = None
        # The close frame the server sent on its own (on an app error, at shutdown), if known.
        self.server_code: int | None = None
        # Facts this connection's server could not report (names of properties).
        self.unknown = _NOTHING_UNKNOWN


class _Tracking:
    """The close-tracking state machine of one connection: the logic, without the storage.

    `CloseTracker` is the public, stand-alone class; the ASGI adapter's per-connection
    object is another `_Tracking`, so that it needs no tracker object of its own. Both hold
    `FACT_SLOTS`, a `_clock` and a `_wall_clock`, and `messages_received` and
    `messages_sent` (slots, or `None` as class attributes when nothing is counted).
    """

    __slots__ = _NO_SLOTS

    quirks: ServerQuirks
    http_version: str | None
    state: ConnectionState
    initiator: Initiator | None
    received_then_sent: bool | None
    error: BaseException | None
    messages_received: int | None
    messages_sent: int | None
    opened_at: float
    finished: bool
    _clock: Callable[[], float]
    _wall_clock: Callable[[], float]
    # The close of the connection as its raw code and reason (None: none): the app's that
    # went out when the app initiated, else the one the server reported. Never both: once the
    # app's close is recorded nothing is received, and the reverse.
    _close: tuple[int, str] | None
    # The facts few connections have (None until one is set).
    _rare: _Rare | None
    _clean: bool
    _outcome: Outcome | None
    _started: float
    # The clocks at the end, (monotonic, wall); None until then.
    _ends: tuple[float, float] | None

    def _begin(self, quirks: ServerQuirks, http_version: str | None) -> None:
        # Every fact's value at the start: the clocks are read here and at the end, only.
        self.quirks = quirks
        #: The HTTP version of the upgrade, as the scope gives it ("1.1", "2", "3").
        self.http_version = http_version
        self.state = CONNECTING
        #: Who started the end: "client", "app", "server", or None (transport lost).
        self.initiator = None
        self._close = None
        self._rare = None
        #: True if the peer's (or server's) close came first, False if the app's did.
        self.received_then_sent = None
        self._clean = True
        self.error = None
        # How it ended, once it has: decided where the end is decided.
        self._outcome = None
        self.opened_at = self._wall_clock()
        self._started = self._clock()
        self._ends = None
        #: The app has returned, raised or been cancelled.
        self.finished = False

    # Public methods for feeding events.

    def receive(self, message: Mapping[str, Any], *, wire: Wire | None = None) -> None:
        """Record a message that the server delivered to the app through `receive()`.

        Args:
            message: The message, as the server delivered it.
            wire: For a `websocket.disconnect`: what the server's connection object says
                about the close frames (its entry's probe), when it has one.
        """
        kind = _type_of(message)
        if kind == "websocket.receive":
            if self.messages_received is not None:
                self.messages_received += 1
        elif kind == "websocket.disconnect":
            self._disconnect(message, wire)
        # websocket.connect changes nothing; unknown types are not ours to judge.

    def send(self, message: Mapping[str, Any], *, requested: Mapping[str, Any] | None = None) -> None:
        """Record a message that the app hands to the server's `send()`, before it goes.

        Args:
            message: The message as it goes to the server.
            requested: The app's own `websocket.close`, when a policy sends `message`
                in its place.
        """
        kind = _type_of(message)
        if kind == "websocket.send":
            if self.messages_sent is not None:
                self.messages_sent += 1
            if self.state >= CLOSING:
                self._more().late_messages += 1
        elif kind == "websocket.accept":
            if not self._transition(_Event.ACCEPT) and self.state >= CLOSING:
                self._more().late_messages += 1
        elif kind == "websocket.close":
            if self.state >= CLOSING:
                self._more().late_messages += 1
            else:
                self._app_close(message, message if requested is None else requested)
        elif kind == "websocket.http.response.start":
            if self._transition(_Event.DENIAL):
                self.initiator = "app"
                self._outcome = "rejected"
                status = message.get("status")
                self._more().http_status = status if isinstance(status, int) else None
                self._more().abnormal = True
                self._clean = False

    def rejected_with_close(self, message: Mapping[str, Any], *, requested: Mapping[str, Any] | None = None) -> None:
        """Record a close before accept that a policy turned into accept-then-close.

        The client completes the handshake and gets the close frame (a browser sees its code),
        so the close status is the app's; the state is still REJECTED.
        """
        if self.state is not CONNECTING:
            return
        self._app_close(message, message if requested is None else requested)
        self._more().abnormal = False
        self._clean = True
        self._more().http_status = None
        self.received_then_sent = False

    def send_failed(self, message: Mapping[str, Any]) -> None:
        """Record that the server's `send()` raised for `message`."""
        if _type_of(message) != "websocket.close":
            return
        # The server refused the close (e.g. an invalid code under websockets), or the client
        # was gone: the connection ends without that close frame. (A rejection by HTTP 403 is
        # abnormal already; one by accept-then-close is not, until now.)
        if self.state is CLOSING or (self.state is REJECTED and not self.abnormal):
            self._more().abnormal = True
            self._clean = False

    def app_exited(self, error: BaseException | None = None, *, wire: Wire | None = None) -> None:
        """Record that the app returned (`error=None`) or raised `error`.

        Args:
            error: The exception that escaped the app, if any.
            wire: What the server's connection object says (its entry's probe), read when
                the app ended while the connection looked open: the client may have closed
                (or the server ended it) while the app was not reading.
        """
        if self.finished:
            return
        self.finished = True
        state = self.state
        if state is CLOSING and error is None:
            # The common case first: the app closed, then returned. Its close stands.
            self.state = _CLOSED_BY_APP_EXIT
            self._ends = (self._clock(), self._wall_clock())
            self.initiator = "app"
            return
        if error is not None:
            self.error = error
            if state is OPEN and self._ended_unread(wire):
                # It ended before the app raised (often the server's own "client gone" from
                # send()): the close stands as it was on the wire, and the error is kept.
                return
            self._clean = False
        elif state is OPEN and self._ended_unread(wire):
            return
        if state >= CLOSED:
            return  # it ended before the app did: nothing more to record
        # Every state before the end has an APP_EXIT transition (TRANSITIONS).
        self._transition(_Event.APP_EXIT)
        self.initiator = "app"
        if state is CONNECTING:
            self._outcome = "rejected" if error is None else "app_error"
            self._more().http_status = self.quirks.rejection_status
            self._more().abnormal = True
            self._clean = False
            return
        if state is OPEN:
            self._outcome = "app_closed" if error is None else "app_error"
        if state is OPEN and error is None and self.quirks.return_leaves_open:
            # daphne keeps the connection open until the client goes, and never says how.
            self._more().unknown = _END_UNKNOWN
        elif state is OPEN:
            # The app ended without closing: the server closes the connection, with a
            # close frame of its own or (uvicorn) without any.
            self._end_by_server(self.quirks.return_close if error is None else self.quirks.error_close)

    def closing_for_error(self, message: Mapping[str, Any]) -> None:
        """Record the close that `close_on_error` sends for the app, which raised after accept."""
        self.send(message)
        if self.state is CLOSING:
            self._outcome = "app_error"

    def app_cancelled(self, *, wire: Wire | None = None) -> None:
        """Record that the app's task was cancelled, as servers do at shutdown.

        Args:
            wire: As for `app_exited`.
        """
        if self.finished:
            return
        self.finished = True
        state = self.state
        if state is OPEN and self._ended_unread(wire, lost_is_the_servers=True):
            return
        if self._transition(_Event.CANCEL) and state is not CLOSING:
            self._server_ended(None if state is CONNECTING else self.quirks.cancel_close)

    def server_exited(self, *, wire: Wire | None = None) -> None:
        """Record that the process (or its event loop) is ending with the connection open.

        Some servers never resume the app at shutdown (daphne): the middleware calls this for
        every connection still open when the process exits, so that each gets its record.
        """
        if self.finished or self.state >= CLOSED:
            return
        self.finished = True
        state = self.state
        if state is OPEN and self._ended_unread(wire, lost_is_the_servers=True):
            return
        self._transition(_Event.CANCEL)
        if state is CLOSING:
            return
        # The close frame the server sent on its own, if it did before it went.
        own = None if wire is None or wire.received_first else wire.sent
        self._server_ended(own.code if isinstance(own, Close) else None)

    # Derived, read-only facts.

    @property
    def received(self) -> Close | None:
        """The close status the server reported in `websocket.disconnect`."""
        close = self._close
        return None if close is None or self.initiator == "app" else _close_from(*close)

    @property
    def sent(self) -> Close | None:
        """The close that went to the server for the app's `websocket.close`."""
        close = self._close
        return None if close is None or self.initiator != "app" else _close_from(*close)

    @property
    def abnormal(self) -> bool:
        """The connection ended without any close frame: its close code is 1006."""
        rare = self._rare
        return rare is not None and rare.abnormal

    @property
    def requested(self) -> Close | None:
        """The close the app asked for; differs from `sent` only if a policy repaired it."""
        rare = self._rare
        return self.sent if rare is None or rare.requested is None else rare.requested

    @property
    def http_status(self) -> int | None:
        """For a rejected handshake: 403 for close-before-accept, or the denial status."""
        rare = self._rare
        return None if rare is None else rare.http_status

    @property
    def code(self) -> int | None:
        """The close code of the connection; 1006 if it ended abnormally.

        `None` while open, and when the server did not report it (see `unknown`).
        """
        rare = self._rare
        if self.state < CLOSED or (rare is not None and "code" in rare.unknown):
            return None
        code = self._final_code()
        return CloseCode.ABNORMAL_CLOSURE if code is None else as_close_code(code)

    @property
    def reason(self) -> str:
        """The close reason that goes with `code`; `""` when there is none."""
        close = self._close
        if self.state < CLOSED or close is None or self.abnormal:
            return ""
        return close[1]

    @property
    def clean(self) -> bool | None:
        """Whether the connection ended with a closing handshake and no app error.

        `None` while open, and when the server did not report it (see `unknown`).
        """
        rare = self._rare
        if self.state < CLOSED or (rare is not None and "clean" in rare.unknown):
            return None
        return self._clean

    @property
    def outcome(self) -> Outcome | None:
        """How the connection ended, in one low-cardinality word; `None` until it has.

        Also `None` when its server could not report it (`"outcome"` in `unknown`).
        """
        rare = self._rare
        if self.state < CLOSED or (rare is not None and "outcome" in rare.unknown):
            return None
        return self._outcome

    @property
    def unknown(self) -> frozenset[str]:
        """Names of the facts this connection's server could not report (e.g. `"reason"`)."""
        rare = self._rare
        return _NOTHING_UNKNOWN if rare is None else rare.unknown

    @property
    def sends_after_close(self) -> int:
        """Messages the app handed to `send()` after its close or the connection's end."""
        rare = self._rare
        return 0 if rare is None else rare.late_messages

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the connection to its end; None until it ends."""
        ends = self._ends
        if ends is None:
            return None
        return ends[0] - self._started

    @property
    def closed_at(self) -> float | None:
        """Wall-clock time (`time.time()`) when it ended; `None` until then."""
        ends = self._ends
        return None if ends is None else ends[1]

    # Private methods.

    def _more(self) -> _Rare:
        # The holder of the rare facts, made when the first is set.
        rare = self._rare
        if rare is None:
            rare = self._rare = _Rare()
        return rare

    def _final_code(self) -> int | None:
        # The code of the close that ended the connection: None when it ended without one
        # (-> 1006). It is the app's close when the app initiated, else the one received;
        # failing that, the server's own close (which has no reason).
        rare = self._rare
        if rare is not None and rare.abnormal:
            return None
        if self._close is not None:
            return self._close[0]
        return None if rare is None else rare.server_code

    def _end_by_server(self, code: int | Literal["unknown"] | None) -> None:
        # The connection ends without the app's close: the server sends `code` on its own,
        # or (None) drops the transport without a close frame, or ("unknown") either.
        self._clean = False
        if code == "unknown":
            self._more().unknown = _END_UNKNOWN
        elif code is None:
            self._more().abnormal = True
        else:
            self._more().server_code = code

    def _server_ended(self, close: int | Literal["unknown"] | None) -> None:
        # The server ended the connection on its own, at shutdown: with a close frame, without
        # one (None), or in a way the tracker cannot tell ("unknown").
        self.initiator = "server"
        self._outcome = "server_shutdown"
        self._end_by_server(close)

    def _ended_unread(self, wire: Wire | None, *, lost_is_the_servers: bool = False) -> bool:
        # The app ended while the connection looked open: if the server says it had ended
        # already (a disconnect the app never read), record that end, not the app's. When the
        # server itself is ending the app (a cancellation, the process exiting), a transport
        # lost without a close frame is the server's doing: that is left to the caller.
        if wire is None or not wire.ended or wire is UNREADABLE:
            return False
        if lost_is_the_servers and wire.received is None and wire.sent is None and wire.cause is None:
            return False
        self._transition(_Event.DISCONNECT)
        self._end_from_wire(wire)
        return True

    def _end_from_wire(self, wire: Wire) -> None:
        # The end of an open connection, as the server's connection object saw it.
        received, sent = wire.received, wire.sent
        if received is not None and wire.received_first is not False:
            # The peer's close came first; clean once the server answered it.
            self.initiator = "client"
            self.received_then_sent = True
            self._outcome = "client_closed"
            if isinstance(received, Close):
                self._close = (received.code, received.reason)
                if not self.quirks.client_reason and self.quirks.probe is None:
                    self._more().unknown = _REASON_UNKNOWN
            else:
                self._more().unknown = _CLOSE_UNKNOWN
            if sent is None:
                self._clean = False
        elif sent is not None:
            # The server's own close: at shutdown an orderly end (1012), otherwise it failed
            # the connection (a keepalive timeout, a protocol error).
            self.initiator = "server"
            self.received_then_sent = False
            self._outcome = _SERVER_OUTCOMES[wire.cause]
            if isinstance(sent, Close):
                self._close = (sent.code, sent.reason)
            else:
                self._more().unknown = _CLOSE_UNKNOWN
            if wire.cause != "shutdown":
                self._clean = False
        elif wire.cause is not None:
            # The server dropped the connection on its own, without a close frame.
            self.initiator = "server"
            self._outcome = _SERVER_OUTCOMES[wire.cause]
            self._more().abnormal = True
            self._clean = False
        else:
            # The transport was lost: no close frame either way.
            self._outcome = "dropped"
            self._more().abnormal = True
            self._clean = False

    def _transition(self, event: _Event) -> bool:
        new_state = TRANSITIONS[self.state].get(event)
        if new_state is None:
            return False
        self.state = new_state
        if new_state >= CLOSED:
            self._ends = (self._clock(), self._wall_clock())
        return True

    def _app_close(self, message: Mapping[str, Any], requested: Mapping[str, Any]) -> None:
        state = self.state
        new_state = _AFTER_CLOSE.get(state)
        if new_state is None:
            return
        if new_state >= CLOSED:  # a rejection: the end
            self._transition(_Event.CLOSE)
        else:
            self.state = new_state
        self._close = _app_close_of(message)
        if requested is not message:
            self._more().requested = _close_of(requested)
        self.initiator = "app"
        self._outcome = "app_closed"
        if state is CONNECTING:
            self._outcome = "rejected"
            # The client gets HTTP 403, never this close frame.
            self._more().http_status = _HTTP_FORBIDDEN
            self._more().abnormal = True
            self._clean = False
        else:
            self.received_then_sent = False

    def _disconnect(self, message: Mapping[str, Any], wire: Wire | None) -> None:
        state = self.state
        if state is OPEN and wire is None:
            # The common case first: a client's close with a code that nothing below treats
            # apart (not in _NOT_PLAIN_CODES), on a server that reports it as it came
            # (ServerQuirks.plain_client_close). The same record as the general path below,
            # with fewer questions asked.
            code = message.get("code")
            if self.quirks.plain_client_close and type(code) is int and code not in _NOT_PLAIN_CODES:
                reason = message.get("reason")
                if type(reason) is not str:
                    reason = _reason_of(message)
                self.state = _CLOSED_BY_DISCONNECT
                self._ends = (self._clock(), self._wall_clock())
                self._close = (code, reason)
                self.initiator = "client"
                self._outcome = "client_closed"
                self.received_then_sent = True
                return
        # The table's transition, inline: a disconnect always ends the connection.
        new_state = _AFTER_DISCONNECT.get(state)
        if new_state is None:
            return
        self.state = new_state
        self._ends = (self._clock(), self._wall_clock())
        if state is CONNECTING:
            # The client left during the handshake: no close frame either way.
            self._outcome = "dropped"
            self._more().abnormal = True
            self._clean = False
            return
        code = message.get("code")
        if type(code) is not int:
            code = _code_of(message)
        if state is CLOSING:
            # Every server answers the app's close with a disconnect of its own making
            # (uvicorn echoes the app's close at once, even if the peer never replies; others
            # send 1000 or 1005), so it says nothing about the peer's reply. Only 1006, which
            # never travels on the wire, tells that the transport was lost first.
            # (uvicorn's echo of an app that closed with 1006 itself is no loss.)
            if code == CloseCode.ABNORMAL_CLOSURE and self._close != (code, _reason_of(message)):
                self._clean = False
            return
        if wire is not None and wire.ended:
            # The server's connection object knows: no guessing from the message's shape.
            self._end_from_wire(wire)
            return
        quirks = self.quirks
        drop = quirks.drop
        # (daphne's empty close frame is an explicit code=None: not this.)
        no_status_without_reason = (
            code == CloseCode.NO_STATUS_RCVD
            and "reason" not in message
            and message.get("code", CloseCode.NO_STATUS_RCVD) is not None
        )
        if (
            drop == "1006 for every client close"
            or (drop == "1005 without reason, ambiguous" and no_status_without_reason)
            or (wire is UNREADABLE and (code == CloseCode.ABNORMAL_CLOSURE or no_status_without_reason))
        ):
            # hypercorn reads 1006 for a clean close, a drop and a protocol error alike;
            # granian reads 1005 for an empty close frame and a drop alike. Whether the client
            # closed at all, and with what, is unknown.
            self._more().unknown = _CLIENT_CLOSE_UNKNOWN
            return
        # 7.1.5: 1006 never travels on the wire: a server reports it when no close frame came.
        # uvicorn's websockets-sansio and wsproto report that as 1005 with *no* reason key,
        # while a real empty close frame comes with reason="" (docs/servers.md, C2/C4).
        if code == CloseCode.ABNORMAL_CLOSURE or (drop == "1005 without reason" and no_status_without_reason):
            self._outcome = "dropped"
            self._more().abnormal = True
            self._clean = False
            return
        reason = message.get("reason")
        if type(reason) is not str:
            reason = _reason_of(message)
        self._close = (code, reason)
        if not quirks.client_reason:
            self._more().unknown = _REASON_UNKNOWN
        if (quirks.own_closes and (code, reason) in quirks.own_closes) or (
            code in SERVER_GENERATED_CODES and is_server_generated(code, reason, "reason" in message)
        ):
            self.initiator = "server"
            self.received_then_sent = False
            # A server fails the connection on a protocol error; 1012 is an orderly restart.
            if code != CloseCode.SERVICE_RESTART:
                self._outcome = "server_error"
                self._clean = False
            else:
                self._outcome = "server_shutdown"
        else:
            self.initiator = "client"
            self._outcome = "client_closed"
            self.received_then_sent = True


class CloseTracker(_Tracking):
    """The close-tracking state machine of one WebSocket connection.

    Feed it every ASGI message the app receives (`receive`) and sends (`send`), then tell
    it how the app ended (`app_exited` or `app_cancelled`). It keeps the facts;
    `asgi_ws_close.CloseContext` is the read-only view users get.

    Args:
        clock: Monotonic clock, for `duration`.
        wall_clock: Wall clock, for `opened_at` and `closed_at`.
        quirks: What the connection's server means by what it reports
            (`asgi_ws_close.SERVERS`); the ASGI spec's rules by default.
        count_messages: Count `websocket.receive` / `websocket.send` messages; without
            it, `messages_received` and `messages_sent` are `None`.
        http_version: The HTTP version of the upgrade, as the scope gives it.
    """

    __slots__ = ("_clock", "_wall_clock", *FACT_SLOTS, *COUNTER_SLOTS)

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        quirks: ServerQuirks = GENERIC,
        count_messages: bool = True,
        http_version: str | None = None,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self.messages_received = 0 if count_messages else None
        self.messages_sent = 0 if count_messages else None
        self._begin(quirks, http_version)
