"""What each ASGI server means by what it reports: one table, and how to tell which server runs.

ASGI leaves much to the server: six real servers disagree on almost every close fact
(``docs/servers.md``, measured on 127.0.0.1; re-checked by ``tests/matrix``). Each
entry of `SERVERS` says, for one server, how it reports a lost transport, what it loses,
which close frame it sends on its own, and, where the ASGI messages lose a fact that the
server's own connection object still holds, how to read that object (its ``probe``). The
tracker (_tracker.py) reads the entry of its connection's server; nothing else in the package
knows server names.

Which server runs is told by the ``send`` callable it hands the app: each server's is a
method of a class of its own (detected by class, cached), which is also the connection object
the probe reads. Another middleware may wrap ``send`` outside ours (a closure, a
``functools.partial``, a bound method of its own object): the wrapper is searched, within a
bound, for the server's callable. When none is found, the scope's fingerprint decides the
entry (with nothing to probe), else `GENERIC`: the ASGI spec's rules plus the
conventions shared by most servers. The middleware's ``server=`` option names an entry
explicitly.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import FunctionType, MethodType, ModuleType
from typing import Any, Literal, NamedTuple

from ._codes import Close, CloseCode, as_close_code

__all__ = ["SERVERS", "ServerQuirks", "detect_server"]

#: How a server reports a transport lost without a close frame, in ``websocket.disconnect``.
DropReport = Literal[
    # 1006, which never travels on the wire; a 1005 is an empty close frame.
    "1006",
    # 1005 without a "reason" key, while a real empty close frame comes with reason="".
    "1005 without reason",
    # 1005 without a "reason" key, exactly as for an empty close frame: either may be meant.
    "1005 without reason, ambiguous",
    # 1006, as for every close from the client side: the client's code never reaches the app.
    "1006 for every client close",
]


#: Why a server closed a connection on its own.
Cause = Literal["timeout", "shutdown", "error"]


class _UnknownClose:
    """A close frame went that way, but the server does not say with which code and reason."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN_CLOSE"


UNKNOWN_CLOSE = _UnknownClose()


class Wire(NamedTuple):
    """What a server's own connection object says about the close frames of one connection.

    Read by a `ServerQuirks.probe` when the ASGI messages lose a fact (a keepalive
    timeout reported as a lost connection, a disconnect the app never read, a reason the
    server dropped). A ``NamedTuple``: made once or twice per connection, at its end.

    Attributes:
        received: The close frame the server received from the peer; ``None`` if none came,
            `UNKNOWN_CLOSE` if one came whose content the server did not keep.
        sent: The close frame the server sent: its own, the app's, or its answer to the
            peer's (same conventions).
        received_first: True if the peer's close came first, False if the server's did.
        cause: Why the server closed (or dropped) the connection on its own, when it did.
        ended: False when nothing has ended on the server's side yet: no close frame either
            way and the transport is open.
    """

    received: Close | _UnknownClose | None = None
    sent: Close | _UnknownClose | None = None
    received_first: bool | None = None
    cause: Cause | None = None
    ended: bool = True


#: The transport is gone, and no close frame went either way.
LOST = Wire()
#: Nothing has ended yet.
STILL_OPEN = Wire(ended=False)
#: The probe could not read the server's object (an upgrade moved an attribute): the facts
#: it was to establish are unknown.
UNREADABLE = Wire(ended=False, cause="error")

#: Reads a server's connection object: ``probe(subject, disconnect_message_or_None)``.
Probe = Callable[[Any, "Mapping[str, Any] | None"], Wire]


@dataclass(frozen=True, slots=True)
class ServerQuirks:
    """What one ASGI server reports about closes, and what that means.

    Attributes:
        name: The server (and WebSocket implementation), e.g. ``"uvicorn-wsproto"``.
        drop: How it reports a lost transport; see `DropReport`.
        client_reason: Whether the client's close reason reaches the app.
        error_close: The close code it sends when the app raises after accept, or ``None``
            when it drops the connection without a close frame (the client sees 1006), or
            ``"unknown"`` when that depends on what the app did not read (a client's close
            the server never shows the app).
        return_close: The same, when the app returns after accept without closing.
        return_leaves_open: The server leaves the connection open when the app returns after
            accept without closing, until the client goes: how it ends is never reported.
        rejection_status: The HTTP status the client gets when the app raises or returns
            before accepting.
        cancel_close: The close code the client gets when the app's task is cancelled (as
            servers do at shutdown), ``None`` when the connection is dropped without a close
            frame, or ``"unknown"`` when it depends on who cancelled.
        own_closes: ``(code, reason)`` pairs that this server reports when it fails the
            connection itself, beyond the texts of `_SERVER_REASONS`.
        probe: Reads the server's connection object (the owner of its ``send``) for the
            facts the ASGI messages lose; ``None`` when there is nothing to read. Any
            exception it raises makes those facts unknown, never wrong.
        reads: What the probe reads, in words.
        facts: The measured facts (docs/servers.md) this entry encodes.
    """

    name: str
    drop: DropReport = "1006"
    client_reason: bool = True
    error_close: int | Literal["unknown"] | None = None
    return_close: int | Literal["unknown"] | None = None
    return_leaves_open: bool = False
    rejection_status: int = 500
    cancel_close: int | Literal["unknown"] | None = None
    own_closes: frozenset[tuple[int, str]] = frozenset()
    probe: Probe | None = None
    reads: str = ""
    facts: str = ""
    # Derived: a client's close reaches the app as it came, code and reason, and no close of
    # the server's own looks like one (the tracker's fast path for a disconnect).
    plain_client_close: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plain = self.drop != "1006 for every client close" and not self.own_closes and self.client_reason
        object.__setattr__(self, "plain_client_close", plain)


#: The ASGI spec, and what most servers do, for a server not in the table.
GENERIC = ServerQuirks(
    name="generic",
    cancel_close="unknown",
    # A 1005 with no reason key is a drop on some servers and an empty close frame on others.
    drop="1005 without reason, ambiguous",
    facts="ASGI spec: 1005 when the frame had no code, 1006 when no frame came; reason optional "
    "(docs/servers.md, difference 3: some servers report a drop as 1005 without a reason)",
)

# Probes: each reads one server's connection object, and nothing else. They run once or twice
# per connection, at its end, never on the message path.

#: What websockets (legacy and new) and uvicorn's wsproto implementation send when a peer
#: stops answering keepalive pings (websockets/protocol.py, legacy/protocol.py;
#: uvicorn/protocols/websockets/wsproto_impl.py ``keepalive_timeout``).
KEEPALIVE_TIMEOUT = Close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")


def _own_cause(close: Close) -> Cause:
    # Why the server sent a close of its own (its own text, never the peer's).
    if close == KEEPALIVE_TIMEOUT:
        return "timeout"
    if close.code in (CloseCode.SERVICE_RESTART, CloseCode.GOING_AWAY):
        return "shutdown"
    return "error"


def _close(code: Any, reason: Any) -> Close:
    return Close(as_close_code(int(code)), reason if isinstance(reason, str) else "")


def _websockets_wire(rcvd: Any, sent: Any, rcvd_then_sent: bool | None, lost: bool) -> Wire:
    # websockets' own record of a connection: Protocol.close_rcvd / close_sent /
    # close_rcvd_then_sent, the same attributes in its legacy and its Sans-I/O protocol.
    received = None if rcvd is None else _close(rcvd.code, rcvd.reason)
    own = None if sent is None else _close(sent.code, sent.reason)
    if received is None and own is None:
        return LOST if lost else STILL_OPEN
    if rcvd_then_sent and own != received:
        # websockets answers a close frame with its echo; any other answer is its own: it
        # failed the connection on the peer's close (a close ending a fragmented message,
        # Autobahn 7.1.5), although close_rcvd_then_sent says the peer's came first.
        rcvd_then_sent = False
    cause = _own_cause(own) if own is not None and not rcvd_then_sent else None
    return Wire(received, own, rcvd_then_sent, cause)


def _probe_uvicorn_websockets(protocol: Any, message: Mapping[str, Any] | None) -> Wire:
    # uvicorn's legacy implementation *is* a websockets legacy protocol.
    return _websockets_wire(
        protocol.close_rcvd, protocol.close_sent, protocol.close_rcvd_then_sent, protocol.transport.is_closing()
    )


def _probe_uvicorn_websockets_sansio(protocol: Any, message: Mapping[str, Any] | None) -> Wire:
    conn = protocol.conn  # websockets.server.ServerProtocol
    lost = protocol.disconnected or protocol.transport.is_closing()
    return _websockets_wire(conn.close_rcvd, conn.close_sent, conn.close_rcvd_then_sent, lost)


def _queued_disconnect(queue: Any) -> Mapping[str, Any] | None:
    # The first websocket.disconnect the server queued for the app and the app never read
    # (asyncio.Queue keeps its items in a deque, ``_queue``).
    for item in queue._queue:
        if isinstance(item, Mapping) and item.get("type") == "websocket.disconnect":
            return item
    return None


def _reported(message: Mapping[str, Any] | None) -> Close | None:
    # A disconnect that carries a close status with its reason key: what the server read from
    # a close frame (a lost connection comes without a reason key on this server).
    if message is None or "reason" not in message or message.get("code") is None:
        return None
    return _close(message["code"], message["reason"])


# Codes a server reports for "no status" and "no close frame" (a spec 2.5 server reports a
# lost connection with reason="" too): never a close that wsproto failed the connection with.
_NOT_ON_THE_WIRE = (CloseCode.NO_STATUS_RCVD, CloseCode.ABNORMAL_CLOSURE)


def _probe_uvicorn_wsproto(protocol: Any, message: Mapping[str, Any] | None) -> Wire:
    # wsproto keeps no close code, only its state; uvicorn keeps close_sent (set when the app
    # or uvicorn itself closed first) and the messages it queued for the app.
    state = protocol.conn.state.name  # wsproto.connection.ConnectionState
    if message is None:
        message = _queued_disconnect(protocol.queue)
    if message is not None and message.get("code") == CloseCode.SERVICE_RESTART and not message.get("reason"):
        # uvicorn's shutdown: it queues 1012 (no reason) and sends it, without close_sent.
        return Wire(UNKNOWN_CLOSE if state == "CLOSED" else None, Close(CloseCode.SERVICE_RESTART), False, "shutdown")
    if not protocol.close_sent and state in ("REMOTE_CLOSING", "CLOSED"):
        # The peer's close frame (uvicorn answers it at once: CLOSED).
        received = _reported(message) or UNKNOWN_CLOSE
        return Wire(received, received if state == "CLOSED" else None, True)
    if protocol.close_sent:
        # Our side closed first: the app (the tracker knows), or uvicorn itself, which reports
        # its shutdown (1012) and size-limit (1009) closes in a disconnect of their own; the
        # only other close it sends on its own is keepalive_timeout's, reported as a lost
        # connection.
        code = None if message is None else message.get("code")
        if code == CloseCode.SERVICE_RESTART:
            own: Close | _UnknownClose = Close(CloseCode.SERVICE_RESTART)
        elif code == CloseCode.MESSAGE_TOO_BIG and message is not None and "reason" in message:
            own = _close(code, message["reason"])
        elif callable(getattr(protocol, "keepalive_timeout", None)):
            own = KEEPALIVE_TIMEOUT
        else:
            own = UNKNOWN_CLOSE
        cause = _own_cause(own) if isinstance(own, Close) else None
        return Wire(UNKNOWN_CLOSE if state == "CLOSED" else None, own, False, cause)
    failed = _reported(message)
    if failed is not None and state == "OPEN" and failed.code not in _NOT_ON_THE_WIRE:
        # wsproto failed the connection on a protocol error (ParseFailed): it reports its close
        # (1002, 1007) to the app but uvicorn sends none (docs/servers.md, C5-C7).
        return Wire(None, failed, False, "error")
    return LOST if protocol.disconnected or protocol.transport.is_closing() else STILL_OPEN


def _probe_hypercorn(stream: Any, message: Mapping[str, Any] | None) -> Wire:
    # hypercorn's WSStream reports 1006 for every client close; its wsproto connection's state
    # still tells a close frame from a lost connection (not the code: wsproto keeps none).
    connection = getattr(stream, "connection", None)  # set when the app accepts
    state = "OPEN" if connection is None else connection.state.name
    if state in ("REMOTE_CLOSING", "CLOSED"):
        # The peer's close frame (hypercorn answers it: CLOSED).
        return Wire(UNKNOWN_CLOSE, UNKNOWN_CLOSE if state == "CLOSED" else None, True)
    if state == "LOCAL_CLOSING":
        # While the app runs, hypercorn closes on its own only for an over-size message.
        return Wire(None, Close(CloseCode.MESSAGE_TOO_BIG), False, "error")
    return LOST if stream.closed else STILL_OPEN


def _probe_daphne(protocol: Any, message: Mapping[str, Any] | None) -> Wire:
    # daphne's protocol is autobahn's WebSocketServerProtocol, which keeps both close frames
    # (daphne passes on the peer's code only, without its reason).
    if message is None:
        message = _queued_disconnect(protocol.application_queue)
    local, remote = protocol.localCloseCode, protocol.remoteCloseCode
    sent = None if local is None else _close(local, protocol.localCloseReason)
    if protocol.closedByMe:
        # Our side closed first: the app's close, or daphne's own (its websocket_timeout).
        received = _close(remote or CloseCode.NO_STATUS_RCVD, protocol.remoteCloseReason) if protocol.wasClean else None
        return Wire(received, sent or UNKNOWN_CLOSE, False, "timeout")
    if message is not None and message.get("code", CloseCode.ABNORMAL_CLOSURE) != CloseCode.ABNORMAL_CLOSURE:
        # The peer's close frame (an empty one is reported as code=None).
        received = _close(remote or CloseCode.NO_STATUS_RCVD, protocol.remoteCloseReason)
        return Wire(received, sent or (UNKNOWN_CLOSE if protocol.wasClean else None), True)
    if protocol.droppedByMe and not protocol.wasClean:
        # autobahn dropped the connection without a close frame: a peer that did not answer
        # its keepalive ping, or a protocol error.
        why = protocol.wasNotCleanReason or ""
        return Wire(cause="timeout" if "ping timeout" in why else "error")
    return LOST if protocol.state == 0 else STILL_OPEN  # autobahn's STATE_CLOSED


# Close statuses that a server generates itself, recognised by their reason texts where no
# probe can tell (servers without one, and a server seen only through its scope).
# 1012 Service Restart is what uvicorn sends on shutdown (all three implementations), with no
# reason key at all; a client's own 1012 comes with a reason (uvicorn reports reason="").
SHUTDOWN_CODES: frozenset[int] = frozenset({1012})

# Reasons put in the disconnect by uvicorn when its protocol library failed the connection:
# websockets (src/websockets/frames.py, protocol.py) and wsproto (frame_protocol.py), plus
# uvicorn's own wsproto size limit (uvicorn/protocols/websockets/wsproto_impl.py).
_SERVER_REASONS: dict[int, re.Pattern[str]] = {
    1002: re.compile(
        r"(?:"
        # websockets
        r"invalid status code|close frame too short|control frame too long|"
        r"fragmented control frame|reserved bits must be 0|invalid opcode|incorrect masking|"
        r"unexpected continuation frame|expected a continuation frame|incomplete fragmented message|"
        # wsproto
        r"CLOSE with (?:invalid code|1 byte payload|unknown reserved code)|"
        r"remote CLOSE with local-only reason|Control frame with payload len > 125|"
        r"Invalid attempt to fragment control frame|Reserved bit set unexpectedly|"
        r"Invalid opcode 0x[0-9a-f]+|unexpected CONTINUATION|expected CONTINUATION, got .*|"
        r"Data type mismatch inside message|server received unexpected unmasked frame|"
        r"Payload length used \d bytes when \d would have sufficed|"
        r"8-byte payload length with non-zero MSB"
        r")\Z"
    ),
    # websockets: "<UnicodeDecodeError.reason> at position N"; wsproto: "Error decoding ...".
    1007: re.compile(r"(?:.+ at position \d+|Error decoding CLOSE reason: .*|.*codec can't decode.*)\Z", re.S),
    # websockets PayloadTooBig; uvicorn's wsproto size limit.
    1009: re.compile(r"(?:.*over size limit.*|Message exceeds the maximum size \(\d+ bytes\))\Z", re.S),
}


#: The codes `is_server_generated` can say yes to: for any other, the answer is no at once.
SERVER_GENERATED_CODES: frozenset[int] = frozenset({*SHUTDOWN_CODES, *_SERVER_REASONS})


def is_server_generated(code: int, reason: str, has_reason: bool = True) -> bool:
    """Tell whether a disconnect status is one the server generated rather than the peer's.

    Args:
        code: The disconnect's code.
        reason: Its reason, ``""`` if none.
        has_reason: Whether the disconnect had a ``reason`` key at all.
    """
    if code in SHUTDOWN_CODES and not has_reason:
        return True
    pattern = _SERVER_REASONS.get(code)
    return pattern is not None and pattern.match(reason) is not None


_UVICORN_FACTS = (
    "C1-C3: the client's code and reason; C2: empty close = 1005 with reason=''; "
    "S-e: the app raising drops TCP without a close frame; shutdown: 1012 without reason; a "
    "cancelled handler: after that 1012 at shutdown (--timeout-graceful-shutdown), or a TCP "
    "drop when the app cancelled itself (tests/test_faults.py)"
)

#: One entry per server (and WebSocket implementation), by name.
SERVERS: dict[str, ServerQuirks] = {
    quirks.name: quirks
    for quirks in (
        ServerQuirks(
            name="uvicorn-websockets",
            drop="1006",
            cancel_close="unknown",
            probe=_probe_uvicorn_websockets,
            reads="the protocol (a websockets legacy protocol): close_rcvd, close_sent, "
            "close_rcvd_then_sent, transport.is_closing()",
            facts=f"{_UVICORN_FACTS}; C4: a drop is 1006 with reason=''; C5-C7: client protocol "
            "errors are reported as 1006 too (the client got 1002/1007)",
        ),
        ServerQuirks(
            name="uvicorn-websockets-sansio",
            drop="1005 without reason",
            cancel_close="unknown",
            # A text frame that is not UTF-8: uvicorn sends 1007 without a reason and reports
            # that (Autobahn 6.3-6.6; uvicorn's send_receive_event_to_app).
            own_closes=frozenset({(1007, "")}),
            probe=_probe_uvicorn_websockets_sansio,
            reads="protocol.conn (websockets' ServerProtocol): close_rcvd, close_sent, "
            "close_rcvd_then_sent; protocol.disconnected, protocol.transport.is_closing()",
            facts=f"{_UVICORN_FACTS}; C4: a drop is 1005 with no reason key; Autobahn 6.x: invalid "
            "UTF-8 text makes it fail the connection with 1007 and report (1007, '')",
        ),
        ServerQuirks(
            name="uvicorn-wsproto",
            drop="1005 without reason",
            cancel_close="unknown",
            probe=_probe_uvicorn_wsproto,
            reads="protocol.conn.state (wsproto's ConnectionState), protocol.close_sent, the "
            "disconnect queued in protocol.queue, protocol.keepalive_timeout (exists: the close "
            "sent on its own is 1011 'keepalive ping timeout'), protocol.disconnected",
            facts=f"{_UVICORN_FACTS}; C4: a drop is 1005 with no reason key",
        ),
        # uvicorn seen through a wrapped send: all three implementations read alike here (the
        # legacy one never reports 1005 without a reason while open).
        ServerQuirks(
            name="uvicorn",
            drop="1005 without reason",
            cancel_close="unknown",
            facts=f"{_UVICORN_FACTS}; C4: a drop is 1006 (websockets) or 1005 with no reason key",
        ),
        ServerQuirks(
            name="hypercorn",
            drop="1006 for every client close",
            client_reason=False,
            error_close=1011,
            return_close=1011,
            cancel_close=1011,
            probe=_probe_hypercorn,
            reads="the WSStream: connection.state (wsproto's ConnectionState: a close frame came, "
            "but not its code), closed",
            facts="C1-C7: every client close, clean or not, is 1006 with no reason; S-e: the app "
            "raising sends 1011; shutdown: receive() is cancelled, the client gets 1011 after the "
            "graceful timeout",
        ),
        ServerQuirks(
            name="daphne",
            drop="1006",
            client_reason=False,
            error_close=1011,
            return_leaves_open=True,
            probe=_probe_daphne,
            reads="the protocol (autobahn's WebSocketServerProtocol): remoteCloseCode, "
            "remoteCloseReason, localCloseCode, localCloseReason, closedByMe, wasClean, "
            "droppedByMe, wasNotCleanReason, state; the disconnect queued in application_queue",
            facts="C1: the client's code without its reason; C2: an empty close is code=None; C4: a "
            "drop is 1006; S-e: the app raising sends 1011; an app that returns without closing "
            "leaves the connection open (tests/matrix); shutdown: the app gets nothing",
        ),
        ServerQuirks(
            name="granian",
            drop="1005 without reason, ambiguous",
            client_reason=False,
            # An empty close frame (1005) when the client is still there; nothing at all when
            # the client closed while the app was not reading (granian reads frames only for
            # receive(): tests/matrix, unread-disconnect), and nothing tells the two apart.
            error_close="unknown",
            return_close="unknown",
            rejection_status=403,
            # Bad close codes from the client: granian fails the connection with 1002
            # 'Protocol violation' and reports 1002 (with no reason, as always).
            own_closes=frozenset({(1002, "")}),
            facts="C1: the client's code without its reason; C2/C4/C5/C7: an empty close, a drop, "
            "an invalid UTF-8 reason and a 1-byte payload are all 1005 with no reason; C6: bad "
            "codes are failed with 1002; S-e: the app raising, or returning, sends an empty close "
            "frame (the client sees 1005), or none when the client had closed unread (tests/matrix); "
            "raising before accept gives HTTP 403; shutdown: 1005",
        ),
    )
}

# The class whose method is the server's ``send``, by module (looked up once per class).
_SERVER_BY_MODULE = {
    "uvicorn.protocols.websockets.websockets_impl": "uvicorn-websockets",
    "uvicorn.protocols.websockets.websockets_sansio_impl": "uvicorn-websockets-sansio",
    "uvicorn.protocols.websockets.wsproto_impl": "uvicorn-wsproto",
    "hypercorn.protocol.ws_stream": "hypercorn",
    "daphne.server": "daphne",
    "daphne.ws_protocol": "daphne",
    "granian._granian": "granian",
}
_cache: dict[type, ServerQuirks] = {}


def detect_server(send: Callable[..., Any], scope: Mapping[str, Any] | None = None) -> ServerQuirks:
    """Return the quirks of the server that runs a connection, or `GENERIC`.

    Args:
        send: The ``send`` callable the server handed over, or another middleware's wrapper
            of it.
        scope: The connection's scope, used when no server callable is found in ``send``:
            its ``asgi`` and ``extensions`` keys, with the server modules imported in the
            process.
    """
    return locate_server(send, scope)[0]


def locate_server(send: Callable[..., Any], scope: Mapping[str, Any] | None = None) -> tuple[ServerQuirks, Any]:
    """Return the quirks of the server that runs a connection, and its connection object.

    The connection object (the owner of the server's `send`: a protocol, a stream) is what
    the entry's probe reads; `None` when the server was told by the scope, or not at all.
    """
    if type(send) is MethodType:
        # A bound method: the server's own (the usual case, one lookup), or another object's.
        owner = send.__self__
        cls = type(owner)
        quirks = _cache.get(cls) or _by_class(cls)
        if quirks is not GENERIC:
            return quirks, owner
        func = send.__func__
        if _opaque_methods.get(cls) is func or (cls, func) in _opaque:
            # Searched before, for nothing: the scope tells, if anything. (One dict lookup for
            # the last method of the class searched, without building the key.)
            if scope is None:
                return _NOWHERE
            # (_imports.now(), inline: a call less on every such connection.)
            if len(sys.modules) != _imports.seen:
                _imports.look()
            if not _imports.fingerprinted:
                return _NOWHERE  # no server of the fingerprints is imported
            return _by_scope(scope), None
        key: object = (cls, func)
    else:
        owner = getattr(send, "__self__", None)
        if owner is not None:
            quirks = _by_class(type(owner))
            if quirks is not GENERIC:
                return quirks, owner
        key = send
    try:
        opaque = key in _opaque
    except TypeError:  # an unhashable callable
        opaque = False
    if not opaque:
        found = _search(send)
        if found is not None:
            return found
        if len(_opaque) < _OPAQUE_LIMIT and _is_opaque(send):
            _opaque.add(key)
            if type(key) is tuple:
                _opaque_methods[key[0]] = key[1]
    return (GENERIC if scope is None else _by_scope(scope)), None


# Sends in which the search found no server's callable, and whose search can only ever find
# the same (nothing in them varies from one connection to the next): searched once. Keyed by
# the class of a bound method's object and the method's function, or the function itself.
_opaque: set[object] = set()
# The same, for bound methods, by class: the function of the last such method of the class
# added to _opaque (a lookup without building the key; _opaque stays the whole answer).
_opaque_methods: dict[type, object] = {}
_NOWHERE: tuple[ServerQuirks, Any] = (GENERIC, None)
# The servers whose scopes _by_scope knows, by the module that must be imported.
_FINGERPRINTED = frozenset({"uvicorn", "daphne", "granian", "hypercorn"})


class _Imports:
    """Whether a server that `_by_scope` can tell is imported, as of a size of `sys.modules`."""

    __slots__ = ("fingerprinted", "seen")

    def __init__(self) -> None:
        self.seen = -1
        self.fingerprinted = False

    def look(self) -> None:
        # Looked again whenever sys.modules has changed size: an import adds to it (a server's
        # adds dozens of modules), so the answer is never older than the last import; four
        # lookups saved on every connection whose server only the scope can tell.
        modules = sys.modules
        self.seen = len(modules)
        self.fingerprinted = not modules.keys().isdisjoint(_FINGERPRINTED)

    def now(self) -> bool:
        """Whether one is imported now."""
        if len(sys.modules) != self.seen:
            self.look()
        return self.fingerprinted


_imports = _Imports()
_OPAQUE_LIMIT = 256


def _is_opaque(send: object) -> bool:
    # What the search's answer depends on is no instance's data: a bound method of an object
    # without a __dict__ (what the search would follow), its function holding no closure; or
    # such a function alone.
    owner = getattr(send, "__self__", None)
    func = send if owner is None else getattr(send, "__func__", None)
    if owner is not None and (isinstance(owner, (ModuleType, type)) or type(owner).__dictoffset__ != 0):
        return False
    return (
        type(func) is FunctionType
        and getattr(func, "__closure__", True) is None
        and getattr(func, "__wrapped__", None) is None
    )


def _by_class(cls: type) -> ServerQuirks:
    quirks = _cache.get(cls)
    if quirks is None:
        name = _SERVER_BY_MODULE.get(cls.__module__)
        quirks = GENERIC if name is None else SERVERS[name]
        # Bounded: one entry per class that ever owned a send callable.
        _cache[cls] = quirks
    return quirks


#: How many callables the search looks at inside a wrapped ``send`` before giving up.
_SEARCH_LIMIT = 32


def _search(send: object) -> tuple[ServerQuirks, Any] | None:
    # Breadth first through what wrappers hold: a partial's function and arguments, a
    # function's __wrapped__ and closure cells, a foreign bound method's function and its
    # object's attributes. Only callables are followed, and only _SEARCH_LIMIT of them.
    todo = [send]
    seen: set[int] = set()
    while todo and len(seen) < _SEARCH_LIMIT:
        target = todo.pop(0)
        if id(target) in seen:
            continue
        seen.add(id(target))
        if isinstance(target, functools.partial):
            owner = getattr(target.func, "__self__", None)
            if owner is not None and target.args and _by_class(type(owner)) is not GENERIC:
                # daphne: functools.partial(Server.handle_reply, protocol).
                return _by_class(type(owner)), target.args[0]
            todo.append(target.func)
            todo.extend(value for value in (*target.args, *target.keywords.values()) if callable(value))
            continue
        owner = getattr(target, "__self__", None)
        if owner is not None and not isinstance(owner, (ModuleType, type)):
            quirks = _by_class(type(owner))
            if quirks is not GENERIC:
                return quirks, owner
            todo.append(getattr(target, "__func__", None))
            attributes = getattr(owner, "__dict__", None)
            if isinstance(attributes, dict):
                todo.extend(value for value in attributes.values() if callable(value))
            continue
        wrapped = getattr(target, "__wrapped__", None)
        if wrapped is not None:
            todo.append(wrapped)
        for cell in getattr(target, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if callable(value):
                todo.append(value)
    return None


def _by_scope(scope: Mapping[str, Any]) -> ServerQuirks:
    # Fingerprints measured in docs/servers.md ("Scope"), confirmed by the server's module being
    # imported: an app may import a server it does not run under, never one that isn't there.
    # (A dict is what every server puts in a scope: told without the Mapping ABC's check.)
    if not _imports.now():
        return GENERIC  # no server of the fingerprints is imported
    modules = sys.modules
    asgi = scope.get("asgi")
    is_asgi = type(asgi) is dict or (asgi is not None and isinstance(asgi, Mapping))
    spec = asgi.get("spec_version") if is_asgi else None  # type: ignore[union-attr]
    found = scope.get("extensions")
    extensions: Mapping[str, Any] | None = (
        found if type(found) is dict or (found is not None and isinstance(found, Mapping)) else None
    )
    # uvicorn announces 2.4 today; a later spec version must not hide it (2.3: hypercorn, granian).
    if (
        extensions is not None
        and isinstance(spec, str)
        and spec not in ("2.3", "2.2", "2.1", "2.0")
        and "websocket.http.response" in extensions
        and "uvicorn" in modules
    ):
        return SERVERS["uvicorn"]
    # daphne: {"version": "3.0"} and no extensions; a scope with no "asgi" at all is a test
    # driver's, not daphne's.
    if is_asgi and spec is None and found is None and "daphne" in modules:
        return SERVERS["daphne"]
    if spec == "2.3" and extensions is not None:
        if "http.response.pathsend" in extensions and "granian" in modules:
            return SERVERS["granian"]
        if "hypercorn" in modules and "granian" not in modules:
            return SERVERS["hypercorn"]
    return GENERIC
