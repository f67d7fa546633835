"""The scenarios of the server matrix, and how each is driven: one source for the test and the generator.

A scenario drives one real connection (or, for shutdown, :data:`SHUTDOWN_CONNECTIONS`)
against ``tests/support/serverapp.py`` under a real server, exactly the same way on every server: the
``websockets`` client where a client library can do it, the raw RFC 6455 client
(``tests/support/rawclient.py``) for what a client library will not send (empty or malformed close
payloads, TCP FIN/RST without a close frame, leaving during the handshake, leaving pings
unanswered), the HTTP/2 client (``tests/support/h2client.py``) for WebSockets over HTTP/2. Most run
one after the other on one server process; the keepalive and HTTP/2 rows need the server
launched with a profile (``keepalive``, ``http2`` in ``tests/support/servers.py``), and each shutdown
row stops its server: those get a server process of their own. It then reads the
lines that the handler and the ``on_close`` hook wrote, checks the invariants that hold on
every server, and returns the scenario's **cell**:

* ``context``: what the ``CloseContext`` says in ``on_close`` (``to_dict()`` without timings);
* ``handler``: what it said when the handler was done (the same, except where the handler
  ends before the connection does);
* ``app``: what the server handed the app at the end (``tests/support/serverapp.py``);
* ``wire``: what the client saw, in words that do not depend on timing.

Every wait is bounded, and the bounds are far from what the servers do, so that no cell
depends on timing:

* where a server delivers nothing, the app's follow-up ``receive()`` gives up after
  :data:`~tests.support.serverapp.FOLLOW_UP_TIMEOUT` (3 s) and says so (hypercorn after an unanswered
  close; granian after a denial response and when the client left during the handshake), well
  above the slowest delivery measured (daphne's 1006, about 0.7 s after an unanswered close);
* a client that must stay silent (never answering the app's close) stays so until both
  records exist: uvicorn's legacy ``websockets`` implementation holds the app's
  ``send(websocket.close)`` for its 10 s close timeout first;
* a client waiting for the end gives up after :data:`CLIENT_TIMEOUT` (5 s) and says the
  connection was left open (daphne, when the app returns without closing; hypercorn on Python
  3.12+ at shutdown), where the other servers end it within milliseconds;
* the silent client of the keepalive row watches for :data:`KEEPALIVE_WATCH` (8 s): uvicorn
  fails the connection about 1 s after the last message (ping after 0.5 s, pong timeout
  0.5 s) and daphne within about 4 s (ping and timeout 1 s, whole seconds only, and it
  checks its connections every 2 s), while a server with no pong timeout (hypercorn) or no
  ping at all (granian) leaves it open; after a close frame, it waits :data:`CLIENT_TIMEOUT`
  more for the TCP close;
* the send-only app sends every :data:`~tests.support.serverapp.SEND_INTERVAL` (50 ms), far above the
  time a server takes to act on the client's close (well under a millisecond on loopback), so
  how many sends returned before one raised does not depend on timing;
* the one race that no bound removes, granian's at shutdown (:data:`SHUTDOWN_RACES`), is
  recorded as a race: its cell holds what every run shares.
"""

from __future__ import annotations

import asyncio
import difflib
import itertools
import json
import platform
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close as WireClose

from tests.support.h2client import ConnectRejected, ExtendedConnectNotSupported, H2cNotSupported, H2WebSocket
from tests.support.rawclient import RawWebSocket, close_payload, send_upgrade_request
from tests.support.serverapp import SEND_LIMIT
from tests.support.servers import POLL_INTERVAL, Server, read_records, run_server, wait_for_records

__all__ = [
    "APPS",
    "CONNECTION_SCENARIOS",
    "HTTP2_SCENARIOS",
    "KEEPALIVE_SCENARIOS",
    "PROFILE_SCENARIOS",
    "PROFILE_APPS",
    "RECORD_ENV",
    "SCENARIOS",
    "SCENARIOS_BY_NAME",
    "SHUTDOWN_APPS",
    "SHUTDOWN_CONNECTIONS",
    "SHUTDOWN_RACES",
    "SHUTDOWN_SCENARIOS",
    "VOLATILE_FIELDS",
    "Scenario",
    "assert_no_duplicates",
    "cell_diffs",
    "apps_for",
    "comparable",
    "python_version",
    "run_connection_scenarios",
    "run_in_own_server",
    "run_shutdown",
]


def python_version() -> str:
    """The interpreter the cells are measured with, e.g. ``"CPython 3.13"``.

    Cells can depend on it: hypercorn 0.18.0 shuts down by awaiting
    ``asyncio.Server.wait_closed()``, which since Python 3.12 waits for every connection to
    close, so a shutdown with WebSockets open never closes them on 3.12+ (it cancels the app
    and sends 1011 after its graceful timeout on 3.11).
    """
    return f"{platform.python_implementation()} {sys.version_info[0]}.{sys.version_info[1]}"


#: Set to a directory: the matrix tests write their cells there instead of comparing them.
RECORD_ENV = "ASGI_WS_CLOSE_MATRIX_RECORD"

#: The apps every scenario runs under; every server must give the same cell for both.
APPS = {
    "starlette": "tests.support.serverapp:starlette_app",
    "fastapi": "tests.support.serverapp:fastapi_app",
}

#: The apps the shutdown scenarios run under: one server process per run, and what happens
#: at shutdown is the server's doing, not the framework's.
SHUTDOWN_APPS = ("starlette",)

#: The apps the rows with a server profile (keepalive, HTTP/2) run under: one server process per
#: run, and what they measure is the server's doing.
PROFILE_APPS = ("starlette",)

#: What a cell leaves out of ``CloseContext.to_dict()``: timings, and what is derived from the
#: rest. Everything else is compared, so that a new field shows up in the matrix at once.
VOLATILE_FIELDS = frozenset({"opened_at", "closed_at", "duration", "code_explanation", "code_name"})

CLIENT_TIMEOUT = 5.0
RECORDS_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 20.0
#: Connections open when the shutdown signal arrives.
SHUTDOWN_CONNECTIONS = 5
#: How long the keepalive row's silent client watches for the server to end the connection.
KEEPALIVE_WATCH = 8.0

#: Servers whose shutdown is a race between the app's tasks and the worker's exit, and why.
#: on_close runs for every connection all the same (the middleware records at exit what the
#: app never got to), but which record a connection gets depends on the race: their shutdown
#: cells are compared on what every run shares (:func:`comparable`), the record excluded.
SHUTDOWN_RACES = {
    "granian": "granian's worker stops its event loop as soon as it has dropped the connections: an app "
    "task scheduled before that reads granian's 1005 (a drop and an empty close frame alike: unknown), "
    "the others are recorded at exit (server_shutdown, 1006)",
}
# Not listed, though its cell also rests on timing: daphne 4.2.3. At shutdown,
# Server.kill_all_applications (daphne/server.py, lines 316-330) cancels the app task of every
# entry of Server.connections, but an upgraded connection's HTTP protocol stays an entry
# without "application_instance" until application_checker (every 1 s) reaps it, and the
# KeyError it raises on that entry ends the loop ("While calling system event trigger
# handler" in daphne's log): the app of a connection younger than that pass is never
# cancelled (its handler never finishes, on_close never runs), the app of an older one is (it
# gets CancelledError). The rows signal within milliseconds of opening, so they measure the
# first case, unless a checker pass falls inside those milliseconds.
#: How many times the generator repeats a raced shutdown to see on_close run.
RACE_ATTEMPTS = 10

_serial = itertools.count()


@dataclass(frozen=True)
class Connection:
    """One connection of a scenario: where to connect, and how to wait for its records."""

    server: Server
    records: Path
    conn_id: str
    path: str

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}{self.path}"

    def wait_for(self, *sources: str) -> list[dict[str, Any]]:
        """Wait (bounded) for a line from each of ``sources``; fail if they do not all come."""
        return wait_for_records(self.records, self.conn_id, sources, RECORDS_TIMEOUT, server=self.server)

    def wait_for_end(self) -> tuple[list[dict[str, Any]], bool]:
        """Wait (bounded) for the handler's and on_close's lines, or for the server to exit.

        Returns the connection's lines and whether the server process is still running.
        """
        deadline = time.monotonic() + RECORDS_TIMEOUT
        while True:
            running = self.server.proc.poll() is None
            lines = [line for line in read_records(self.records) if line.get("id") == self.conn_id]
            if {"handler", "on_close"} <= {line.get("source") for line in lines} or not running:
                return lines, running
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {RECORDS_TIMEOUT} s waiting for the records of {self.conn_id!r} "
                    f"in {self.records}; found: {lines!r}\n{self.server.describe()}"
                )
            time.sleep(POLL_INTERVAL)


#: A client driver: runs the client side of a scenario, returns what the client saw.
Drive = Callable[[Connection], str]


class NoWebSocket(Exception):
    """Raised by a driver when the server offered no WebSocket at all (say, none over HTTP/2):
    the app never ran, so the cell is what the client saw, with no record."""


@dataclass(frozen=True)
class Scenario:
    """One row of the matrix."""

    name: str
    title: str
    route: str
    drive: Drive | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    #: For shutdown rows: the signal the server gets with connections open.
    signal: signal.Signals | None = None
    #: The server profile (``tests/support/servers.py``, ``PROFILES``) the row needs; such a row gets
    #: a server process of its own.
    profile: str | None = None


# Client drivers.


def _ws_client(url: str) -> connect:
    return connect(url, open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT, ping_interval=None)


async def _recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), CLIENT_TIMEOUT)


async def _until_closed(ws: ClientConnection) -> bool:
    """Wait (bounded) for the connection to end; False if it is still open after the bound."""
    try:
        message = await _recv(ws)
    except ConnectionClosed:
        return True
    except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
        return False
    raise AssertionError(f"expected the connection to close, got a message: {message!r}")


async def _ending(ws: ClientConnection) -> str:
    if not await _until_closed(ws):
        return f"no close frame, connection left open ({CLIENT_TIMEOUT:g} s)"
    return _describe_close(ws.protocol.close_rcvd)


def _describe_close(close: WireClose | None) -> str:
    return "no close frame" if close is None else f"close {int(close.code)} {close.reason!r}"


def ws_client_closes(code: int, reason: str) -> Drive:
    """The websockets client exchanges one message, then closes with ``code`` and ``reason``."""

    def drive(conn: Connection) -> str:
        async def run() -> str:
            async with _ws_client(conn.url) as ws:
                await ws.send("hi")
                assert await _recv(ws) == "hi"
                await ws.close(code, reason)
                return _describe_close(ws.protocol.close_rcvd)

        return asyncio.run(run())

    return drive


def ws_reads_then_closes(code: int, reason: str) -> Drive:
    """The websockets client reads one message (of an app that only sends), then closes with
    ``code`` and ``reason``; the app's further messages are left unread."""

    def drive(conn: Connection) -> str:
        async def run() -> str:
            async with _ws_client(conn.url) as ws:
                await _recv(ws)
                await ws.close(code, reason)
                return _describe_close(ws.protocol.close_rcvd)

        return asyncio.run(run())

    return drive


def ws_waits_for_the_end(conn: Connection) -> str:
    """The websockets client opens the connection and waits until it ends (answering a close)."""

    async def run() -> str:
        async with _ws_client(conn.url) as ws:
            return await _ending(ws)

    return asyncio.run(run())


def ws_handshake(conn: Connection) -> str:
    """The websockets client tries to open a connection the app rejects: the HTTP status."""

    async def run() -> str:
        try:
            async with _ws_client(conn.url):
                pass
        except InvalidStatus as exc:
            return f"HTTP {exc.response.status_code}"
        except Exception as exc:  # no HTTP response at all
            return f"no HTTP response ({type(exc).__name__})"
        return "handshake accepted"

    return asyncio.run(run())


def raw_sends_close(payload: bytes) -> Drive:
    """The raw client exchanges one message, sends a close frame of exactly ``payload``, and
    reads the server's answer."""

    def drive(conn: Connection) -> str:
        with RawWebSocket.connect(conn.port, conn.path, timeout=CLIENT_TIMEOUT) as raw:
            raw.send_text("hi")
            assert raw.recv_text() == "hi"
            raw.send_close(payload)
            return raw.read_ending().describe()

    return drive


def raw_drops(how: str) -> Drive:
    """The raw client exchanges one message, then ends TCP (FIN or RST) without a close frame."""

    def drive(conn: Connection) -> str:
        raw = RawWebSocket.connect(conn.port, conn.path, timeout=CLIENT_TIMEOUT)
        try:
            raw.send_text("hi")
            assert raw.recv_text() == "hi"
        finally:
            if how == "fin":
                raw.drop_fin()
            else:
                raw.drop_rst()
        return f"client sent TCP {how.upper()}"

    return drive


def raw_goes_silent(conn: Connection) -> str:
    """The raw client exchanges one message, then answers nothing, not even pings, for
    :data:`KEEPALIVE_WATCH` seconds: what the server sent (pings, a close frame, a TCP close)."""
    with RawWebSocket.connect(conn.port, conn.path, timeout=CLIENT_TIMEOUT) as raw:
        raw.send_text("hi")
        assert raw.recv_text(answer_pings=False) == "hi"
        return raw.watch(KEEPALIVE_WATCH, after_close=CLIENT_TIMEOUT).describe()


def raw_never_answers(conn: Connection) -> str:
    """The raw client reads the app's close frame, then stays silent until both records exist."""
    with RawWebSocket.connect(conn.port, conn.path, timeout=CLIENT_TIMEOUT) as raw:
        ending = raw.read_ending()
        conn.wait_for("handler", "on_close")
    return f"{ending.describe()}; client never answered"


def raw_leaves_during_handshake(conn: Connection) -> str:
    """The raw client sends the upgrade request and, once the app waits before accepting,
    ends TCP (FIN) without reading the response."""
    sock, _ = send_upgrade_request(conn.port, conn.path, timeout=CLIENT_TIMEOUT)
    try:
        conn.wait_for("waiting")
    finally:
        sock.close()
    return "client left before the response"


def _h2_websocket(conn: Connection) -> H2WebSocket:
    """An RFC 8441 WebSocket over cleartext HTTP/2 (prior knowledge), or :class:`NoWebSocket`
    saying how the server refused it."""
    try:
        return H2WebSocket.connect(conn.port, conn.path, timeout=CLIENT_TIMEOUT)
    except H2cNotSupported as exc:
        answer = exc.first_bytes.split(b"\r\n", 1)[0].decode("latin-1")
        raise NoWebSocket(f"no HTTP/2: the h2c preface got {answer!r}") from None
    except ExtendedConnectNotSupported:
        raise NoWebSocket("HTTP/2 without extended CONNECT (no SETTINGS_ENABLE_CONNECT_PROTOCOL)") from None
    except ConnectRejected as exc:
        refusal = f"status {exc.status}" if exc.status is not None else f"RST_STREAM {exc.reset_code}"
        raise NoWebSocket(f"extended CONNECT refused: {refusal}") from None


def h2_client_closes(code: int, reason: str) -> Drive:
    """Over HTTP/2: the client exchanges one message, then closes with ``code`` and ``reason``."""

    def drive(conn: Connection) -> str:
        with _h2_websocket(conn) as ws:
            ws.send_text("hi")
            assert ws.receive() == "hi"
            answer = ws.close(code, reason)
        return "no close frame" if answer is None else f"close {answer.code} {answer.reason!r}"

    return drive


def h2_resets(conn: Connection) -> str:
    """Over HTTP/2: the client exchanges one message, then resets the stream (RST_STREAM
    CANCEL) without a close frame, and closes the TCP connection once both records exist."""
    with _h2_websocket(conn) as ws:
        ws.send_text("hi")
        assert ws.receive() == "hi"
        ws.reset()
        conn.wait_for("handler", "on_close")
    return "client sent RST_STREAM (CANCEL)"


def h2_waits_for_the_end(conn: Connection) -> str:
    """Over HTTP/2: the client opens the connection and waits until it ends (answering a close)."""
    with _h2_websocket(conn) as ws:
        return ws.wait_end(CLIENT_TIMEOUT)


# The rows, in matrix order.

CONNECTION_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("client-close-4001", "client closes: 4001 'bye'", "/ws/echo", ws_client_closes(4001, "bye")),
    Scenario("client-close-1000", "client closes: 1000 ''", "/ws/echo", ws_client_closes(1000, "")),
    Scenario("client-close-empty", "client closes: empty close payload (no status)", "/ws/echo", raw_sends_close(b"")),
    Scenario("drop-fin", "client drops TCP (FIN), no close frame", "/ws/echo", raw_drops("fin")),
    Scenario("drop-rst", "client drops TCP (RST), no close frame", "/ws/echo", raw_drops("rst")),
    Scenario(
        "protocol-invalid-utf8",
        "client protocol error: close 1000 + invalid UTF-8 reason",
        "/ws/echo",
        raw_sends_close(close_payload(1000, b"\xff")),
    ),
    Scenario(
        "protocol-code-1005",
        "client protocol error: close code 1005 (reserved)",
        "/ws/echo",
        raw_sends_close(close_payload(1005)),
    ),
    Scenario(
        "protocol-code-1006",
        "client protocol error: close code 1006 (reserved)",
        "/ws/echo",
        raw_sends_close(close_payload(1006)),
    ),
    Scenario(
        "protocol-code-999",
        "client protocol error: close code 999 (out of range)",
        "/ws/echo",
        raw_sends_close(close_payload(999)),
    ),
    Scenario(
        "protocol-code-5000",
        "client protocol error: close code 5000 (out of range)",
        "/ws/echo",
        raw_sends_close(close_payload(5000)),
    ),
    Scenario("protocol-one-byte", "client protocol error: 1-byte close payload", "/ws/echo", raw_sends_close(b"\x03")),
    Scenario(
        "app-close-answered",
        "app closes 4003 'nope', then receive(); the client answers",
        "/ws/app-close",
        ws_waits_for_the_end,
        {"code": "4003", "reason": "nope"},
    ),
    Scenario(
        "app-close-unanswered",
        "app closes 4003 'nope', then receive() (3 s bound); the client never answers",
        "/ws/app-close",
        raw_never_answers,
        {"code": "4003", "reason": "nope"},
    ),
    Scenario("app-raises", "app raises after accept", "/ws/raise", ws_waits_for_the_end),
    Scenario("app-returns", "app returns after accept without closing", "/ws/return", ws_waits_for_the_end),
    Scenario(
        "unread-disconnect",
        f"app only sends (never receive()), every 50 ms, at most {SEND_LIMIT}; the client reads one, "
        "then closes 4003 'gone'",
        "/ws/send-only",
        ws_reads_then_closes(4003, "gone"),
    ),
    Scenario(
        "reject",
        "app receives websocket.connect, then closes (4001) before accept",
        "/ws/reject",
        ws_handshake,
        {"code": "4001", "first": "receive"},
    ),
    Scenario(
        "deny",
        "app receives websocket.connect, then sends a denial response (HTTP 401)",
        "/ws/deny",
        ws_handshake,
    ),
    Scenario("raise-before-accept", "app raises before accept", "/ws/raise-before-accept", ws_handshake),
    Scenario(
        "client-leaves-handshake",
        "client leaves during the handshake (app waiting before accept, 3 s bound)",
        "/ws/wait-before-accept",
        raw_leaves_during_handshake,
    ),
    # Last: it stops granian 2.8.9 (its worker panics, and granian exits).
    Scenario(
        "reject-at-once",
        "app closes (4001) before accept without a receive() first (Starlette's usual code)",
        "/ws/reject",
        ws_handshake,
        {"code": "4001"},
    ),
)

KEEPALIVE_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "keepalive-timeout",
        "server keepalive ping on (uvicorn: ping 0.5 s, pong timeout 0.5 s; daphne: 1 s, 1 s; hypercorn: "
        "ping 1 s, it has no timeout; granian: no ping option); the client exchanges one message, then "
        f"answers nothing, not even pings (watches {KEEPALIVE_WATCH:g} s)",
        "/ws/echo",
        raw_goes_silent,
        profile="keepalive",
    ),
)

#: WebSockets over HTTP/2 (RFC 8441), h2c with prior knowledge (``tests/support/h2client.py``), each
#: server launched with its ``http2`` profile. A server that offers none gives the client's
#: view and no record.
HTTP2_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "h2-client-close-4001",
        "HTTP/2 (h2c, RFC 8441 extended CONNECT): client closes 4001 'bye'",
        "/ws/echo",
        h2_client_closes(4001, "bye"),
        profile="http2",
    ),
    Scenario(
        "h2-reset",
        "HTTP/2 (h2c, RFC 8441): client resets the stream (RST_STREAM), no close frame",
        "/ws/echo",
        h2_resets,
        profile="http2",
    ),
    Scenario(
        "h2-app-close",
        "HTTP/2 (h2c, RFC 8441): app closes 4003 'nope', then receive(); the client answers",
        "/ws/app-close",
        h2_waits_for_the_end,
        {"code": "4003", "reason": "nope"},
        profile="http2",
    ),
)

#: The rows that need their server launched with a profile: each gets a server process of its own.
PROFILE_SCENARIOS = KEEPALIVE_SCENARIOS + HTTP2_SCENARIOS

SHUTDOWN_SCENARIOS: tuple[Scenario, ...] = tuple(
    Scenario(
        f"shutdown-{sig.name}",
        f"server shutdown by {sig.name}, {SHUTDOWN_CONNECTIONS} connections open, app in receive() "
        f"(clients wait {CLIENT_TIMEOUT:g} s for the end)",
        "/ws/echo",
        signal=sig,
    )
    for sig in (signal.SIGINT, signal.SIGTERM)
)

#: Every row of the matrix, in order.
SCENARIOS: tuple[Scenario, ...] = CONNECTION_SCENARIOS + PROFILE_SCENARIOS + SHUTDOWN_SCENARIOS
SCENARIOS_BY_NAME: dict[str, Scenario] = {scenario.name: scenario for scenario in SCENARIOS}


def apps_for(scenario: Scenario) -> tuple[str, ...]:
    """The apps (names of :data:`APPS`) a row runs under."""
    if scenario.signal is not None:
        return SHUTDOWN_APPS
    if scenario.profile is not None:
        return PROFILE_APPS
    return tuple(APPS)


# Running them.


def _path(scenario: Scenario) -> tuple[str, str]:
    conn_id = f"{scenario.name}-{next(_serial)}"
    return conn_id, f"{scenario.route}?{urlencode({'id': conn_id, **scenario.params})}"


def summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """The cell's view of a ``CloseContext.to_dict()``: all of it but :data:`VOLATILE_FIELDS`."""
    return {name: value for name, value in record.items() if name not in VOLATILE_FIELDS}


def _check_record(record: Mapping[str, Any], where: str) -> None:
    # What holds on every server, whatever the normalisation decides.
    state = record["state"]
    if state in ("CLOSED", "REJECTED"):
        assert record["closed_at"] is not None and record["closed_at"] >= record["opened_at"], where
        assert record["duration"] is not None and record["duration"] >= 0, where
        unknown = set(record.get("unknown") or ())
        if record["code"] is None:
            assert "code" in unknown, f"{where}: an ended connection without a code must say the code is unknown"
        if record["clean"] is None:
            assert "clean" in unknown, f"{where}: an ended connection without clean must say it is unknown"
    else:
        assert record["closed_at"] is None and record["duration"] is None, where


def _one_per_source(lines: list[dict[str, Any]], sources: tuple[str, ...], where: str) -> dict[str, dict[str, Any]]:
    counts = Counter(line["source"] for line in lines if line["source"] in sources)
    assert counts == Counter(sources), f"{where}: expected one line from each of {sources}: {lines!r}"
    return {line["source"]: line for line in lines}


def run_connection_scenario(server: Server, records: Path, scenario: Scenario) -> dict[str, Any]:
    """Drive ``scenario`` once against a running ``server``; return its cell."""
    assert scenario.drive is not None
    conn_id, path = _path(scenario)
    conn = Connection(server, records, conn_id, path)
    where = f"{scenario.name} on {server.name}"
    try:
        wire = scenario.drive(conn)
    except NoWebSocket as refused:
        # Refused before any app ran: nothing may have been recorded for it.
        found = [line for line in read_records(records) if line.get("id") == conn_id]
        assert not found, f"{where}: refused, yet recorded: {found!r}"
        return {"context": None, "handler": None, "app": None, "wire": str(refused), "websocket": "none"}
    found, running = conn.wait_for_end()
    if not running:
        # The server process died: nothing more will be written, by the app or its hook.
        assert not [line for line in found if line["source"] == "on_close"], f"{where}: {found!r}"
        return {"context": None, "handler": None, "app": None, "wire": wire, "server_process": "exited"}
    lines = _one_per_source(found, ("handler", "on_close"), where)
    on_close, handler = lines["on_close"], lines["handler"]
    _check_record(on_close["record"], f"{where} (on_close)")
    _check_record(handler["record"], f"{where} (handler)")
    assert on_close["record"]["state"] in ("CLOSED", "REJECTED"), f"{where}: on_close before the end"
    return {
        "context": summary(on_close["record"]),
        "handler": summary(handler["record"]),
        "app": handler["app"],
        "wire": wire,
    }


def assert_no_duplicates(records: Path) -> None:
    """After the server exited: at most one line per (connection, source)."""
    counts = Counter((line["id"], line["source"]) for line in read_records(records))
    duplicates = {key: count for key, count in counts.items() if count > 1}
    assert not duplicates, f"records written more than once in {records}: {duplicates}"


def run_connection_scenarios(
    server_name: str,
    app_ref: str,
    records: Path,
    scenarios: Sequence[Scenario] = CONNECTION_SCENARIOS,
    *,
    profile: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Start ``server_name`` with ``app_ref`` (and ``profile``), run ``scenarios`` on it, in order."""
    with run_server(app_ref, server_name, records, profile=profile) as server:
        cells = {scenario.name: run_connection_scenario(server, records, scenario) for scenario in scenarios}
    assert_no_duplicates(records)
    return cells


def run_in_own_server(server_name: str, app_ref: str, records: Path, scenario: Scenario) -> dict[str, Any]:
    """Start ``server_name`` with ``app_ref`` and the row's profile, run the row; its cell."""
    return run_connection_scenarios(server_name, app_ref, records, (scenario,), profile=scenario.profile)[scenario.name]


def _collapse(values: list[Any]) -> Any:
    # One value when every connection agrees; otherwise the sorted list, so that the cell
    # shows the disagreement instead of hiding it.
    distinct: list[Any] = []
    for value in values:
        if value not in distinct:
            distinct.append(value)
    if len(distinct) == 1:
        return distinct[0]
    return sorted(distinct, key=repr)


def run_shutdown(
    server_name: str, app_ref: str, records_dir: Path, scenario: Scenario, *, need_context: bool = False
) -> dict[str, Any]:
    """Open :data:`SHUTDOWN_CONNECTIONS` connections with the app in ``receive()``, signal the
    server, wait for it to exit; return the cell.

    On a server of :data:`SHUTDOWN_RACES`, with ``need_context`` (the generator), a run whose
    every connection lacks a record is repeated, up to :data:`RACE_ATTEMPTS` times.
    """
    attempts = RACE_ATTEMPTS if need_context and server_name in SHUTDOWN_RACES else 1
    for attempt in range(attempts):
        cell = _shutdown_once(server_name, app_ref, records_dir / f"records-{attempt}.jsonl", scenario)
        if cell["context"] is not None:
            break
    return cell


def _shutdown_once(server_name: str, app_ref: str, records: Path, scenario: Scenario) -> dict[str, Any]:
    sig = scenario.signal
    assert sig is not None
    with run_server(app_ref, server_name, records) as server:
        paths = [_path(scenario) for _ in range(SHUTDOWN_CONNECTIONS)]

        async def client() -> list[str]:
            async with AsyncExitStack() as stack:
                sockets = [
                    await stack.enter_async_context(_ws_client(f"ws://127.0.0.1:{server.port}{path}"))
                    for _, path in paths
                ]
                for ws in sockets:
                    await ws.send("hi")
                    assert await _recv(ws) == "hi"  # the app is back in receive()
                server.send_signal(sig)
                return list(await asyncio.gather(*(_ending(ws) for ws in sockets)))

        wires = asyncio.run(client())
        server.wait_exit(SHUTDOWN_TIMEOUT)
        log = server.describe()
    # The server has exited: every line it will ever write is in the file.
    assert_no_duplicates(records)
    lines = read_records(records)
    race = SHUTDOWN_RACES.get(server_name)
    contexts: list[Any] = []
    handlers: list[Any] = []
    apps: list[Any] = []
    for conn_id, _ in paths:
        mine = {line["source"]: line for line in lines if line["id"] == conn_id}
        on_close, handler = mine.get("on_close"), mine.get("handler")
        if on_close is not None:
            _check_record(on_close["record"], f"{conn_id} (on_close); {log}")
        contexts.append(None if on_close is None else summary(on_close["record"]))
        handlers.append(None if handler is None else summary(handler["record"]))
        apps.append(None if handler is None else handler["app"])
    cell = {
        "context": _collapse(contexts) if contexts else None,
        "handler": _collapse(handlers) if handlers else None,
        "app": _collapse(apps) if apps else None,
        "wire": _collapse(wires),
    }
    ran = sum(context is not None for context in contexts)
    cell["on_close"] = f"{ran}/{SHUTDOWN_CONNECTIONS}"
    if race is not None:
        cell["race"] = race
    return cell


def _dump(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def cell_diffs(want: Mapping[str, Any], got: Mapping[str, Any], want_label: str, got_label: str) -> list[str]:
    """Two runs' cells, by scenario: a unified diff per scenario whose cells differ (none: the
    runs agree), for the tests that compare two servers or two apps with each other."""
    problems = []
    for name in sorted(want.keys() | got.keys()):
        if want.get(name) != got.get(name):
            diff = difflib.unified_diff(
                _dump(want.get(name)), _dump(got.get(name)), want_label, got_label, lineterm="", n=2
            )
            problems.append(f"--- {name}:\n" + "\n".join(diff))
    return problems


def comparable(cell: dict[str, Any]) -> dict[str, Any]:
    """What every run of a raced shutdown shares: on_close ran for every connection, whichever
    record the race gave it."""
    return {key: cell[key] for key in ("wire", "on_close", "race")}
