"""What each ASGI server means by what it reports: one table, and how to tell which server runs.

ASGI leaves much to the server: six real servers disagree on almost every close fact
(``../shared/facts/servers.md``, measured on 127.0.0.1; re-checked by ``tests/matrix``). Each
entry of :data:`SERVERS` says, for one server, how it reports a lost transport, what it loses,
and which close frame it sends on its own, with the measured facts it encodes. The tracker
(_tracker.py) reads the entry of its connection's server; nothing else in the package knows
server names.

Which server runs is told by the ``send`` callable it hands the app: each server's is a
method of a class of its own (detected once per connection, cached by class). When that
callable is hidden (another middleware wraps ``send`` outside ours), or the server is not in
the table, the connection gets :data:`GENERIC`: the ASGI spec's rules plus the conventions
shared by most servers. The middleware's ``server=`` option names an entry explicitly.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

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


@dataclass(frozen=True, slots=True)
class ServerQuirks:
    """What one ASGI server reports about closes, and what that means.

    Attributes:
        name: The server (and WebSocket implementation), e.g. ``"uvicorn-wsproto"``.
        drop: How it reports a lost transport; see :data:`DropReport`.
        client_reason: Whether the client's close reason reaches the app.
        error_close: The close code it sends when the app raises after accept, or ``None``
            when it drops the connection without a close frame (the client sees 1006).
        return_close: The same, when the app returns after accept without closing.
        return_leaves_open: The server leaves the connection open when the app returns after
            accept without closing, until the client goes: how it ends is never reported.
        rejection_status: The HTTP status the client gets when the app raises or returns
            before accepting.
        cancel_close: The close code the client gets when the app's task is cancelled (as
            servers do at shutdown), ``None`` when the connection is dropped without a close
            frame, or ``"unknown"`` when it depends on who cancelled.
        own_closes: ``(code, reason)`` pairs that this server reports when it fails the
            connection itself, beyond the texts of ``_signatures.py``.
        facts: The measured facts (servers.md) this entry encodes.
    """

    name: str
    drop: DropReport = "1006"
    client_reason: bool = True
    error_close: int | None = None
    return_close: int | None = None
    return_leaves_open: bool = False
    rejection_status: int = 500
    cancel_close: int | Literal["unknown"] | None = None
    own_closes: frozenset[tuple[int, str]] = frozenset()
    facts: str = ""


#: The ASGI spec, and what most servers do, for a server not in the table.
GENERIC = ServerQuirks(
    name="generic",
    cancel_close="unknown",
    # A 1005 with no reason key is a drop on some servers and an empty close frame on others.
    drop="1005 without reason, ambiguous",
    facts="ASGI spec: 1005 when the frame had no code, 1006 when no frame came; reason optional "
    "(servers.md difference 3: some servers report a drop as 1005 without a reason)",
)

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
            facts=f"{_UVICORN_FACTS}; C4: a drop is 1005 with no reason key; Autobahn 6.x: invalid "
            "UTF-8 text makes it fail the connection with 1007 and report (1007, '')",
        ),
        ServerQuirks(
            name="uvicorn-wsproto",
            drop="1005 without reason",
            cancel_close="unknown",
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
            facts="C1: the client's code without its reason; C2: an empty close is code=None; C4: a "
            "drop is 1006; S-e: the app raising sends 1011; an app that returns without closing "
            "leaves the connection open (tests/matrix); shutdown: the app gets nothing",
        ),
        ServerQuirks(
            name="granian",
            drop="1005 without reason, ambiguous",
            client_reason=False,
            error_close=1005,
            return_close=1005,
            rejection_status=403,
            # Bad close codes from the client: granian fails the connection with 1002
            # 'Protocol violation' and reports 1002 (with no reason, as always).
            own_closes=frozenset({(1002, "")}),
            facts="C1: the client's code without its reason; C2/C4/C5/C7: an empty close, a drop, "
            "an invalid UTF-8 reason and a 1-byte payload are all 1005 with no reason; C6: bad "
            "codes are failed with 1002; S-e: the app raising, or returning, sends an empty close "
            "frame (the client sees 1005); raising before accept gives HTTP 403; shutdown: 1005",
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
    """Return the quirks of the server that runs a connection, or :data:`GENERIC`.

    Args:
        send: The ``send`` callable the server handed over; each server's is a method of a
            class of its own.
        scope: The connection's scope, used when ``send`` is hidden behind a wrapper: its
            ``asgi`` and ``extensions`` keys, with the server modules imported in the process.
    """
    target: object = send
    # daphne hands the app functools.partial(Server.handle_reply, protocol).
    while isinstance(target, functools.partial):
        target = target.func
    owner = getattr(target, "__self__", None)
    if owner is None:
        return GENERIC if scope is None else _by_scope(scope)
    cls = type(owner)
    quirks = _cache.get(cls)
    if quirks is None:
        name = _SERVER_BY_MODULE.get(cls.__module__)
        quirks = GENERIC if name is None else SERVERS[name]
        # Bounded: one entry per class that ever owned a send callable.
        _cache[cls] = quirks
    if quirks is GENERIC and scope is not None:
        return _by_scope(scope)
    return quirks


def _by_scope(scope: Mapping[str, Any]) -> ServerQuirks:
    # Fingerprints measured in servers.md ("Scope"), confirmed by the server's module being
    # imported: an app may import a server it does not run under, never one that isn't there.
    asgi = scope.get("asgi")
    spec = asgi.get("spec_version") if isinstance(asgi, Mapping) else None
    extensions = scope.get("extensions")
    modules = sys.modules
    if spec == "2.4" and "uvicorn" in modules:
        return SERVERS["uvicorn"]
    # daphne: {"version": "3.0"} and no extensions; a scope with no "asgi" at all is a test
    # driver's, not daphne's.
    if isinstance(asgi, Mapping) and spec is None and extensions is None and "daphne" in modules:
        return SERVERS["daphne"]
    if spec == "2.3" and isinstance(extensions, Mapping):
        if "http.response.pathsend" in extensions and "granian" in modules:
            return SERVERS["granian"]
        if "hypercorn" in modules and "granian" not in modules:
            return SERVERS["hypercorn"]
    return GENERIC
