"""Faults on real servers: every connection gets exactly one close record, and the right one.

uvicorn runs ``tests.support.reliabilityapp:app`` with each of its WebSocket implementations (``--ws
websockets``, ``websockets-sansio``, ``wsproto``) on 127.0.0.1. The faults: a client that
aborts in the middle of a message (a first fragment, or half a frame, then RST or FIN); the
app raising before accept, after accept and inside a send; the server's send raising; the app
sending after the client went away; the app's task cancelled (by itself, and by uvicorn's
graceful-shutdown timeout); and SIGINT/SIGTERM with 100 connections open.

After each server has exited, its records file must hold exactly one ``on_close`` line per
connection the test opened: none lost, none duplicated.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.rawclient import OP_TEXT, Ending, HandshakeRejected, RawWebSocket
from tests.support.reliabilityapp import logged_exceptions, on_close_lines, wait_for_on_close
from tests.support.servers import Server, close_fields, read_records, record_fields, run_server

pytestmark = pytest.mark.server

IMPLS = ("websockets", "websockets-sansio", "wsproto")
APP = "tests.support.reliabilityapp:app"

CLIENT_TIMEOUT = 10.0
RECORD_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 30.0
#: Connections open when the server gets SIGINT/SIGTERM.
SHUTDOWN_CONNECTIONS = 100
#: uvicorn's --timeout-graceful-shutdown (through its UVICORN_ environment variable), seconds.
GRACEFUL_TIMEOUT = "1"


#: The exceptions the fault routes raise, as uvicorn logs them.
APP_EXCEPTIONS = {
    "RuntimeError: boom after accept",
    "RuntimeError: boom before accept",
    "RuntimeError: boom inside send",
    "OSError: server send failed",
    "asyncio.exceptions.CancelledError",
}

_serial = itertools.count()


def expected(
    impl: str,
    *,
    initiator: str | None,
    code: int,
    clean: bool,
    error: tuple[str, str] | None = None,
    server: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A record's close fields under uvicorn ``impl``: the app counts messages (0 unless given)."""
    return record_fields(
        initiator=initiator,
        code=code,
        clean=clean,
        error=None if error is None else {"type": error[0], "message": error[1]},
        server=f"uvicorn-{impl}" if server is None else server,
        **{"messages_received": 0, "messages_sent": 0, **fields},
    )


#: An echo connection that the server shut down: its disconnect 1012, after one echo.
SHUTDOWN_1012: dict[str, Any] = {
    "initiator": "server",
    "code": 1012,
    "clean": True,
    "received": {"code": 1012, "reason": ""},
    "received_then_sent": False,
    "messages_received": 1,
    "messages_sent": 1,
}


def fields(line: dict[str, Any]) -> dict[str, Any]:
    """The close fields of a record line, after checking what every ended record must hold."""
    record = line["record"]
    assert record["state"] in ("CLOSED", "REJECTED"), line
    # No cross-talk: the hook ran with this connection's own context in the contextvar and
    # the scope.
    assert line["current"] is True and line["scoped"] is True, line
    return close_fields(record)


def check_exactly_one_record_each(records: Path, ids: set[str]) -> dict[str, dict[str, Any]]:
    """After the server exited: one on_close line per id opened, none for any other id."""
    lines = on_close_lines(records)
    counts = {conn_id: len(found) for conn_id, found in lines.items()}
    assert {conn_id for conn_id, count in counts.items() if count > 1} == set(), f"duplicated: {counts}"
    assert ids - lines.keys() == set(), f"lost: {sorted(ids - lines.keys())}"
    assert lines.keys() - ids == set(), f"unexpected: {sorted(lines.keys() - ids)}"
    per_source = Counter((line["id"], line["source"]) for line in read_records(records))
    assert max(per_source.values(), default=1) == 1, f"a line was written twice: {per_source.most_common(3)}"
    return {conn_id: found[0] for conn_id, found in lines.items()}


@dataclass
class Target:
    """One uvicorn server for the module's single-connection faults, and the ids it served."""

    impl: str
    server: Server
    records: Path
    ids: set[str] = field(default_factory=set)

    def path(self, route: str, scenario: str, **params: str) -> tuple[str, str]:
        conn_id = f"{scenario}-{next(_serial)}"
        self.ids.add(conn_id)
        return conn_id, f"{route}?{urlencode({'id': conn_id, **params})}"

    def on_close(self, conn_id: str) -> dict[str, Any]:
        """Wait for the connection's on_close line; exactly one must exist."""
        lines = wait_for_on_close(self.records, {conn_id}, RECORD_TIMEOUT, self.server.describe)[conn_id]
        assert len(lines) == 1, lines
        return lines[0]

    def handler(self, conn_id: str) -> dict[str, Any]:
        self.on_close(conn_id)  # the handler line is written before the hook runs
        found = [line for line in read_records(self.records) if line["id"] == conn_id and line["source"] == "handler"]
        assert len(found) == 1, found
        return found[0]


@pytest.fixture(scope="module", params=IMPLS)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    impl: str = request.param
    records = tmp_path_factory.mktemp(f"faults-{impl}") / "records.jsonl"
    with run_server(APP, impl, records) as server:
        target = Target(impl, server, records)
        yield target
        log = server.describe()
    check_exactly_one_record_each(records, target.ids)
    # What the server logged escaped the app: the app's own exceptions, never one of the
    # middleware's making (ClientDisconnected escapes too, but uvicorn does not log it).
    assert set(logged_exceptions(log)) <= APP_EXCEPTIONS, log


# The client aborts in the middle of a message.


def _abort(raw: RawWebSocket, how: str) -> None:
    if how == "rst":
        raw.drop_rst()
    else:
        raw.drop_fin()


@pytest.mark.parametrize("how", ["rst", "fin"])
@pytest.mark.parametrize("part", ["first-fragment", "half-frame"])
def test_client_aborts_in_the_middle_of_a_message(target: Target, part: str, how: str) -> None:
    conn_id, path = target.path("/ws/echo", f"abort-{part}-{how}")
    raw = RawWebSocket.connect(target.server.port, path, timeout=CLIENT_TIMEOUT)
    if part == "first-fragment":
        # A text message whose first frame has FIN=0: the message never completes.
        raw.send_frame(OP_TEXT, b"hello, wor", fin=False)
    else:
        # A frame header announcing 10 payload bytes (mask 0), then only 5 of them.
        raw.sock.sendall(struct.pack("!BB", 0x81, 0x80 | 10) + b"\0\0\0\0" + b"hello")
    _abort(raw, how)

    want = expected(target.impl, initiator=None, code=1006, clean=False)
    assert fields(target.on_close(conn_id)) == want
    handler = target.handler(conn_id)
    assert fields(handler) == want
    # The server's own words differ (docs/servers.md, C4); the record is the same.
    server_said = {"code": 1006, "reason": ""} if target.impl == "websockets" else {"code": 1005}
    assert handler["disconnect"] == {"type": "websocket.disconnect", **server_said}


# The app raises.


def test_app_raises_before_accept(target: Target) -> None:
    conn_id, path = target.path("/ws/raise-before-accept", "raise-before-accept")
    with pytest.raises(HandshakeRejected) as rejected:
        RawWebSocket.connect(target.server.port, path, timeout=CLIENT_TIMEOUT)
    assert rejected.value.status == 500
    assert fields(target.on_close(conn_id)) == expected(
        target.impl,
        state="REJECTED",
        initiator="app",
        code=1006,
        clean=False,
        http_status=500,
        error=("RuntimeError", "boom before accept"),
    )


def test_app_raises_after_accept(target: Target) -> None:
    conn_id, path = target.path("/ws/raise-after-accept", "raise-after-accept")
    with RawWebSocket.connect(target.server.port, path, timeout=CLIENT_TIMEOUT) as raw:
        assert raw.recv_text() == "ready"
        # uvicorn drops TCP without a close frame (docs/servers.md, S-e): the client sees 1006.
        assert raw.read_ending() == Ending("eof")
    assert fields(target.on_close(conn_id)) == expected(
        target.impl,
        initiator="app",
        code=1006,
        clean=False,
        error=("RuntimeError", "boom after accept"),
        messages_sent=1,
    )


@pytest.mark.parametrize(
    ("route", "error", "counts"),
    [
        # The app's send path (an await before the message reaches the middleware) raises.
        pytest.param("raise-in-send", ("RuntimeError", "boom inside send"), {"messages_sent": 1}, id="app"),
        # The server's send raises under the middleware's send (OSError, as for a lost client).
        # The failed send is counted: it was handed to the server. send is wrapped outside the
        # middleware: the server's callable is found through the wrapper (server=None: the impl).
        pytest.param("server-send-raises", ("OSError", "server send failed"), {"messages_sent": 2}, id="server"),
    ],
)
def test_a_send_raises(target: Target, route: str, error: tuple[str, str], counts: dict[str, Any]) -> None:
    """A send raises after one echo: the client sees the TCP connection end without a close frame."""
    conn_id, path = target.path(f"/ws/{route}", route)
    with RawWebSocket.connect(target.server.port, path, timeout=CLIENT_TIMEOUT) as raw:
        raw.send_text("hi")
        assert raw.recv_text() == "hi"
        raw.send_text("explode")
        assert raw.read_ending() == Ending("eof")
    assert fields(target.on_close(conn_id)) == expected(
        target.impl, initiator="app", code=1006, clean=False, error=error, messages_received=2, **counts
    )


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_app_sends_after_the_client_left(target: Target, how: str) -> None:
    """send() raises ClientDisconnected (an OSError) and the app lets it escape.

    The client dropped the connection first: the server's connection object says the transport
    was lost with no close frame, so the record is a drop (initiator None, 1006), not the
    app's close, although no websocket.disconnect reached the app; the exception that escaped
    is still the record's ``error``.
    """
    conn_id, path = target.path("/ws/send-after-disconnect", f"send-after-{how}")
    raw = RawWebSocket.connect(target.server.port, path, timeout=CLIENT_TIMEOUT)
    assert raw.recv_text() == "ready"
    _abort(raw, how)

    line = target.on_close(conn_id)
    got = fields(line)
    # "ready", then ticks every few ms until one raises: how many went out is timing.
    assert got.pop("messages_sent") >= 2
    want = expected(target.impl, initiator=None, code=1006, clean=False, error=("ClientDisconnected", ""))
    del want["messages_sent"]
    assert got == want
    assert line["record"]["outcome"] == "dropped"


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_app_catches_the_send_error_then_receives_the_disconnect(target: Target, how: str) -> None:
    conn_id, path = target.path("/ws/send-after-disconnect", f"send-after-caught-{how}", catch="1")
    raw = RawWebSocket.connect(target.server.port, path, timeout=CLIENT_TIMEOUT)
    assert raw.recv_text() == "ready"
    _abort(raw, how)

    handler = target.handler(conn_id)
    assert handler["send_error"] == "ClientDisconnected"
    for line in (handler, target.on_close(conn_id)):
        got = fields(line)
        assert got.pop("messages_sent") >= 2
        want = expected(target.impl, initiator=None, code=1006, clean=False)
        del want["messages_sent"]
        assert got == want


def test_a_refused_second_close_keeps_the_first(target: Target) -> None:
    conn_id, path = target.path("/ws/double-close", "double-close")
    with RawWebSocket.connect(target.server.port, path, timeout=CLIENT_TIMEOUT) as raw:
        assert raw.read_ending() == Ending("close", struct.pack("!H", 4000) + b"bye")
    handler = target.handler(conn_id)
    assert handler["send_error"].startswith("Unexpected ASGI message 'websocket.close'")
    got = fields(target.on_close(conn_id))
    assert got["sends_after_close"] == 1
    assert (got["initiator"], got["code"], got["reason"], got["clean"]) == ("app", 4000, "bye", True)


# Cancellation.


def test_app_cancels_its_own_task(target: Target) -> None:
    """A CancelledError escaping the app is recorded as a cancellation by the server.

    The middleware cannot tell who cancelled the task; it documents "server" (shutdown is the
    usual canceller). What the client got depends on who cancelled (here uvicorn drops TCP
    without a close frame; at shutdown it sends 1012 first), so the code is unknown.
    """
    conn_id, path = target.path("/ws/cancel-self", "cancel-self")
    with RawWebSocket.connect(target.server.port, path, timeout=CLIENT_TIMEOUT) as raw:
        assert raw.recv_text() == "ready"
        raw.send_text("go")
        assert raw.read_ending() == Ending("eof")
    got = fields(target.on_close(conn_id))
    assert (got["state"], got["initiator"], got["code"], got["clean"]) == ("CLOSED", "server", None, None)
    assert {"code", "clean"} <= set(target.on_close(conn_id)["record"]["unknown"])


@dataclass(frozen=True)
class CancelledAtShutdown:
    """uvicorn's graceful-shutdown timeout cancelled a handler that never receives."""

    impl: str
    ending: Ending
    record: dict[str, Any]
    echo: dict[str, Any]
    unknown: list[str]


@pytest.fixture(scope="module", params=IMPLS)
def cancelled_at_shutdown(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CancelledAtShutdown]:
    impl: str = request.param
    records = tmp_path_factory.mktemp(f"graceful-{impl}") / "records.jsonl"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN", GRACEFUL_TIMEOUT)
        with run_server(APP, impl, records) as server:
            stalled = RawWebSocket.connect(server.port, "/ws/stall?id=stall", timeout=SHUTDOWN_TIMEOUT)
            with stalled, RawWebSocket.connect(server.port, "/ws/echo?id=echo", timeout=SHUTDOWN_TIMEOUT) as echo:
                assert stalled.recv_text() == "ready"
                echo.send_text("hi")
                assert echo.recv_text() == "hi"
                server.send_signal(signal.SIGTERM)
                ending = stalled.read_ending()
                echo.read_ending()
            server.wait_exit(SHUTDOWN_TIMEOUT)
            log = server.describe()
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in log, log
    lines = check_exactly_one_record_each(records, {"stall", "echo"})
    yield CancelledAtShutdown(
        impl, ending, fields(lines["stall"]), fields(lines["echo"]), lines["stall"]["record"]["unknown"]
    )


def test_shutdown_timeout_cancels_a_stalled_handler(cancelled_at_shutdown: CancelledAtShutdown) -> None:
    """At shutdown uvicorn sends 1012 to every connection, then cancels the handlers still
    running after --timeout-graceful-shutdown: the record says the server ended it, with the
    1012 that the server's connection object shows it sent, clean (it is an orderly restart)."""
    case = cancelled_at_shutdown
    assert case.ending == Ending("close", struct.pack("!H", 1012)), "the client gets 1012 at once"
    # The cancelled handler ("ready" sent, never a receive after accept): the same 1012.
    assert case.record == expected(case.impl, **{**SHUTDOWN_1012, "messages_received": 0})
    assert case.unknown == []
    # The connection that did receive its disconnect: 1012 from the server, clean.
    assert case.echo == expected(case.impl, **SHUTDOWN_1012)


# Shutdown with many connections open.


async def _open_and_echo(url: str) -> ClientConnection:
    ws = await connect(url, open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT, ping_interval=None)
    await ws.send("hi")
    # The echo proves the app is back in receive() when the signal comes.
    assert await asyncio.wait_for(ws.recv(), CLIENT_TIMEOUT) == "hi"
    return ws


async def _wait_closed(ws: ClientConnection) -> tuple[int | None, str | None]:
    try:
        message = await asyncio.wait_for(ws.recv(), SHUTDOWN_TIMEOUT)
    except ConnectionClosed as closed:
        rcvd = closed.rcvd
        return (None, None) if rcvd is None else (int(rcvd.code), rcvd.reason)
    raise AssertionError(f"expected the close, got {message!r}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("impl", IMPLS)
def test_shutdown_with_many_connections_open(impl: str, sig: signal.Signals, tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    ids = {f"shutdown-{sig.name}-{i}" for i in range(SHUTDOWN_CONNECTIONS)}
    with run_server(APP, impl, records) as server:
        base = f"ws://127.0.0.1:{server.port}/ws/echo"

        async def clients() -> list[tuple[int | None, str | None]]:
            sockets = await asyncio.gather(*(_open_and_echo(f"{base}?id={conn_id}") for conn_id in sorted(ids)))
            try:
                server.send_signal(sig)
                return await asyncio.gather(*(_wait_closed(ws) for ws in sockets))
            finally:
                await asyncio.gather(*(ws.close() for ws in sockets))

        closes = asyncio.run(clients())
        server.wait_exit(SHUTDOWN_TIMEOUT)
        log = server.describe()

    assert Counter(closes) == Counter({(1012, ""): SHUTDOWN_CONNECTIONS}), log
    lines = check_exactly_one_record_each(records, ids)
    want = expected(impl, **SHUTDOWN_1012)
    wrong = {conn_id: fields(line) for conn_id, line in lines.items() if fields(line) != want}
    assert wrong == {}, log
    handlers = [line for line in read_records(records) if line["source"] == "handler"]
    assert sorted(line["id"] for line in handlers) == sorted(ids)
    assert all(fields(line) == want for line in handlers)
    assert "Exception in ASGI application" not in log, log
