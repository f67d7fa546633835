"""Real-server tests: uvicorn (three WebSocket implementations) x Starlette / FastAPI.

Each scenario drives a real connection (the ``websockets`` client, or the raw-socket client
for what a client library will not send) against ``tests/serverapp.py`` under uvicorn on
127.0.0.1, then checks the close record that the handler and the ``on_close`` hook wrote.
What the servers send is measured in ``shared/facts/servers.md``.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close as WireClose

from tests.rawclient import Ending, RawWebSocket, close_payload
from tests.servers import Server, read_records, run_server, wait_for_records

pytestmark = pytest.mark.server

IMPLS = ("websockets", "websockets-sansio", "wsproto")
APPS = {
    "starlette": "tests.serverapp:starlette_app",
    "fastapi": "tests.serverapp:fastapi_app",
}
MATRIX = [(impl, app) for impl in IMPLS for app in APPS]

CLIENT_TIMEOUT = 5.0
SHUTDOWN_TIMEOUT = 15.0

# The fields that say how a connection ended; both records must match them exactly.
CLOSE_FIELDS = (
    "state",
    "initiator",
    "code",
    "reason",
    "clean",
    "received",
    "sent",
    "received_then_sent",
    "requested",
    "sends_after_close",
    "error",
    "http_status",
    "messages_received",
    "messages_sent",
)

_serial = itertools.count()


# Helpers.


@dataclass(frozen=True)
class Target:
    """One running server: (ws impl, app) and the file its records go to."""

    impl: str
    app: str
    server: Server
    records: Path

    def connection(self, route: str, scenario: str, **params: str) -> tuple[str, str]:
        """A fresh connection id and the request path (with query) for ``route``."""
        conn_id = f"{scenario}-{next(_serial)}"
        return conn_id, f"{route}?{urlencode({'id': conn_id, **params})}"

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.server.port}{path}"


def close(code: int, reason: str = "") -> dict[str, Any]:
    return {"code": code, "reason": reason}


def expected(
    *,
    state: str = "CLOSED",
    initiator: str | None,
    code: int | None,
    reason: str = "",
    clean: bool | None,
    received: dict[str, Any] | None = None,
    sent: dict[str, Any] | None = None,
    received_then_sent: bool | None = None,
    error: dict[str, str] | None = None,
    http_status: int | None = None,
    messages_received: int = 0,
    messages_sent: int = 0,
) -> dict[str, Any]:
    return {
        "state": state,
        "initiator": initiator,
        "code": code,
        "reason": reason,
        "clean": clean,
        "received": received,
        "sent": sent,
        "received_then_sent": received_then_sent,
        # The default invalid_close="pass" never repairs: what went out is what was asked.
        "requested": sent,
        "sends_after_close": 0,
        "error": error,
        "http_status": http_status,
        "messages_received": messages_received,
        "messages_sent": messages_sent,
    }


def fields(line: dict[str, Any]) -> dict[str, Any]:
    record = line["record"]
    if record["state"] in ("CLOSED", "REJECTED"):
        assert record["closed_at"] is not None and record["closed_at"] >= record["opened_at"]
        assert record["duration"] is not None and record["duration"] >= 0
    else:
        assert record["closed_at"] is None and record["duration"] is None
    return {key: record[key] for key in CLOSE_FIELDS}


def records_of(
    records: Path,
    conn_id: str,
    sources: tuple[str, ...] = ("handler", "on_close"),
    server: Server | None = None,
) -> dict[str, dict[str, Any]]:
    """Wait for the records of ``conn_id``: exactly one line per source, and no other."""
    lines = wait_for_records(records, conn_id, sources, server=server)
    counts = Counter(line["source"] for line in lines)
    assert counts == Counter(sources), f"expected one line from each of {sources}: {lines!r}"
    return {line["source"]: line for line in lines}


def assert_no_duplicates(records: Path) -> None:
    """After the server exited: at most one line per (connection, source)."""
    counts = Counter((line["id"], line["source"]) for line in read_records(records))
    duplicates = {key: count for key, count in counts.items() if count > 1}
    assert not duplicates, f"records written more than once in {records}: {duplicates}"


def ws_client(url: str) -> connect:
    return connect(url, open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT, ping_interval=None)


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), CLIENT_TIMEOUT)


async def recv_until_closed(ws: ClientConnection) -> ConnectionClosed:
    """Wait for the connection to end; return the ConnectionClosed the client raised."""
    try:
        message = await recv(ws)
    except ConnectionClosed as exc:
        return exc
    raise AssertionError(f"expected the connection to close, got a message: {message!r}")


def wire(close_frame: WireClose | None) -> tuple[int, str] | None:
    return None if close_frame is None else (int(close_frame.code), close_frame.reason)


def handshake_status(url: str) -> int:
    """Open a connection the app rejects; return the HTTP status the client got."""

    async def attempt() -> int:
        try:
            async with ws_client(url):
                pass
        except InvalidStatus as exc:
            return int(exc.response.status_code)
        raise AssertionError("the handshake was accepted")

    return asyncio.run(attempt())


def open_then_wait_for_end(url: str) -> ConnectionClosed:
    async def run() -> ConnectionClosed:
        async with ws_client(url) as ws:
            return await recv_until_closed(ws)

    return asyncio.run(run())


# One server per (ws impl, app) for the scenarios that do not stop it.


@pytest.fixture(scope="module", params=MATRIX, ids=[f"{impl}-{app}" for impl, app in MATRIX])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    impl, app = request.param
    records = tmp_path_factory.mktemp(f"records-{impl}-{app}") / "records.jsonl"
    with run_server(APPS[app], impl, records) as server:
        yield Target(impl=impl, app=app, server=server, records=records)
    assert_no_duplicates(records)


# 1, 11: the client closes with a code, through the websockets client.


@pytest.mark.parametrize(("code", "reason"), [(4001, "bye"), (1000, "")], ids=["4001", "1000"])
def test_client_closes(target: Target, code: int, reason: str) -> None:
    conn_id, path = target.connection("/ws/echo", f"client-close-{code}")

    async def client() -> tuple[str | bytes, WireClose | None]:
        async with ws_client(target.url(path)) as ws:
            await ws.send("hi")
            echo = await recv(ws)
            await ws.close(code, reason)
            return echo, ws.protocol.close_rcvd

    echo, close_rcvd = asyncio.run(client())
    assert echo == "hi"
    assert wire(close_rcvd) == (code, reason), "the server echoes the client's close"

    lines = records_of(target.records, conn_id, server=target.server)
    want = expected(
        initiator="client",
        code=code,
        reason=reason,
        clean=True,
        received=close(code, reason),
        received_then_sent=True,
        messages_received=1,
        messages_sent=1,
    )
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    assert lines["handler"]["disconnect"] == close(code, reason)


# 2: a close frame with an empty payload (no status code).


def test_client_closes_without_status(target: Target) -> None:
    conn_id, path = target.connection("/ws/echo", "client-close-empty")
    with RawWebSocket.connect(target.server.port, path) as raw:
        raw.send_text("hi")
        assert raw.recv_text() == "hi"
        raw.send_close(b"")
        ending = raw.read_ending()
    assert ending == Ending("close", b""), "the server echoes the empty close payload"

    lines = records_of(target.records, conn_id, server=target.server)
    want = expected(
        initiator="client",
        code=1005,
        reason="",
        clean=True,
        received=close(1005),
        received_then_sent=True,
        messages_received=1,
        messages_sent=1,
    )
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    assert lines["handler"]["disconnect"] == close(1005)


# 3: the app closes with 4003 'nope', then receives the follow-up disconnect.


def test_app_closes(target: Target) -> None:
    conn_id, path = target.connection("/ws/app-close", "app-close", code="4003", reason="nope")

    async def client() -> tuple[ConnectionClosed, WireClose | None]:
        async with ws_client(target.url(path)) as ws:
            closed = await recv_until_closed(ws)
            return closed, ws.protocol.close_rcvd

    closed, close_rcvd = asyncio.run(client())
    assert wire(close_rcvd) == (4003, "nope")
    assert wire(closed.rcvd) == (4003, "nope")
    assert closed.rcvd_then_sent is True  # the client answered the app's close

    lines = records_of(target.records, conn_id, server=target.server)
    want = expected(
        initiator="app",
        code=4003,
        reason="nope",
        clean=True,
        sent=close(4003, "nope"),
        received_then_sent=False,
    )
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    # What uvicorn hands the app after its close (servers.md, S-b): legacy websockets says
    # 1005 with no reason key; sansio and wsproto repeat the app's own close at once.
    if target.impl == "websockets":
        assert lines["handler"]["disconnect"] == {"type": "websocket.disconnect", "code": 1005}
    else:
        assert lines["handler"]["disconnect"] == {
            "type": "websocket.disconnect",
            "code": 4003,
            "reason": "nope",
        }


# 4: the client drops the TCP connection without a close frame.


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_client_drops_connection(target: Target, how: str) -> None:
    conn_id, path = target.connection("/ws/echo", f"drop-{how}")
    raw = RawWebSocket.connect(target.server.port, path)
    try:
        raw.send_text("hi")
        assert raw.recv_text() == "hi"
    finally:
        if how == "fin":
            raw.drop_fin()
        else:
            raw.drop_rst()

    lines = records_of(target.records, conn_id, server=target.server)
    want = expected(
        initiator=None,
        code=1006,
        reason="",
        clean=False,
        messages_received=1,
        messages_sent=1,
    )
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    # The server's own words differ (servers.md, C4); the library normalises both to 1006.
    server_code = 1006 if target.impl == "websockets" else 1005
    assert lines["handler"]["disconnect"] == close(server_code)


# 5: the app raises after accept.


def test_app_raises(target: Target) -> None:
    conn_id, path = target.connection("/ws/raise", "raise")
    closed = open_then_wait_for_end(target.url(path))
    # uvicorn drops TCP without a close frame: the client sees 1006.
    assert closed.rcvd is None and closed.sent is None

    lines = records_of(target.records, conn_id, ("on_close",), server=target.server)
    assert fields(lines["on_close"]) == expected(
        initiator="app",
        code=1006,
        clean=False,
        error={"type": "RuntimeError", "message": "boom from the app"},
    )


# 6: the app returns after accept without closing.


def test_app_returns_without_closing(target: Target) -> None:
    conn_id, path = target.connection("/ws/return", "return")
    closed = open_then_wait_for_end(target.url(path))
    assert closed.rcvd is None and closed.sent is None

    lines = records_of(target.records, conn_id, server=target.server)
    # The handler read the live context just before it returned: still open.
    assert fields(lines["handler"]) == expected(state="OPEN", initiator=None, code=None, clean=None)
    assert fields(lines["on_close"]) == expected(initiator="app", code=1006, clean=False)


# 7: the app closes before accept.


def test_app_rejects_with_close(target: Target) -> None:
    conn_id, path = target.connection("/ws/reject", "reject", code="4001")
    assert handshake_status(target.url(path)) == 403

    lines = records_of(target.records, conn_id, server=target.server)
    want = expected(
        state="REJECTED",
        initiator="app",
        code=1006,
        clean=False,
        sent=close(4001),
        http_status=403,
    )
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    assert lines["handler"]["disconnect"] == {"type": "websocket.disconnect", "code": 1006}


# 8: the app answers the handshake with a denial response.


def test_app_denies(target: Target) -> None:
    conn_id, path = target.connection("/ws/deny", "deny")
    assert handshake_status(target.url(path)) == 401

    lines = records_of(target.records, conn_id, server=target.server)
    want = expected(state="REJECTED", initiator="app", code=1006, clean=False, http_status=401)
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    assert lines["handler"]["disconnect"] == {"type": "websocket.disconnect", "code": 1006}


# 10: protocol errors in the client's close frame (servers.md, C5-C7).

PROTOCOL_ERRORS = {
    "code-999": close_payload(999),
    "code-1005": close_payload(1005),
    "one-byte": b"\x03",
    "invalid-utf8": close_payload(1000, b"\xff"),
}

# (code, reason) that websockets-sansio and wsproto put in the disconnect; sansio sends the
# same close frame to the client, wsproto drops TCP without one.
SANSIO_ERRORS = {
    "code-999": (1002, "invalid status code"),
    "code-1005": (1002, "invalid status code"),
    "one-byte": (1002, "close frame too short"),
    "invalid-utf8": (1007, "invalid start byte at position 0"),
}
WSPROTO_ERRORS = {
    "code-999": (1002, "CLOSE with invalid code"),
    "code-1005": (1002, "remote CLOSE with local-only reason"),
    "one-byte": (1002, "CLOSE with 1 byte payload"),
    "invalid-utf8": (
        1007,
        "Error decoding CLOSE reason: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
    ),
}


@pytest.mark.parametrize("case", list(PROTOCOL_ERRORS))
def test_client_protocol_error(target: Target, case: str) -> None:
    conn_id, path = target.connection("/ws/echo", f"protocol-error-{case}")
    with RawWebSocket.connect(target.server.port, path) as raw:
        raw.send_text("hi")
        assert raw.recv_text() == "hi"
        raw.send_close(PROTOCOL_ERRORS[case])
        ending = raw.read_ending()

    lines = records_of(target.records, conn_id, server=target.server)
    if target.impl == "websockets":
        # Legacy websockets fails the connection on the wire (1002/1007, no reason) but tells
        # the app 1006 with reason='': indistinguishable from a lost transport.
        wire_code = 1007 if case == "invalid-utf8" else 1002
        assert ending == Ending("close", close_payload(wire_code))
        server_said = (1006, "")
        want = expected(initiator=None, code=1006, clean=False, messages_received=1, messages_sent=1)
    else:
        server_said = (SANSIO_ERRORS if target.impl == "websockets-sansio" else WSPROTO_ERRORS)[case]
        code, reason = server_said
        if target.impl == "websockets-sansio":
            assert ending == Ending("close", close_payload(code, reason.encode()))
        else:
            assert ending == Ending("eof")
        want = expected(
            initiator="server",
            code=code,
            reason=reason,
            clean=False,
            received=close(code, reason),
            received_then_sent=False,
            messages_received=1,
            messages_sent=1,
        )
    assert lines["handler"]["disconnect"] == close(*server_said)
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want


# 9: server shutdown with a connection open and the app waiting in receive().


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("app", list(APPS))
@pytest.mark.parametrize("impl", IMPLS)
def test_server_shutdown(impl: str, app: str, sig: signal.Signals, tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    with run_server(APPS[app], impl, records) as server:
        target = Target(impl=impl, app=app, server=server, records=records)
        conn_id, path = target.connection("/ws/echo", f"shutdown-{sig.name}")

        async def client() -> tuple[ConnectionClosed, WireClose | None]:
            async with ws_client(target.url(path)) as ws:
                await ws.send("hi")
                assert await recv(ws) == "hi"  # the app is back in receive()
                server.send_signal(sig)
                closed = await recv_until_closed(ws)
                return closed, ws.protocol.close_rcvd

        closed, close_rcvd = asyncio.run(client())
        server.wait_exit(SHUTDOWN_TIMEOUT)
        log = server.describe()

    assert wire(close_rcvd) == (1012, ""), log
    assert wire(closed.rcvd) == (1012, ""), log
    assert_no_duplicates(records)
    lines = {line["source"]: line for line in read_records(records) if line["id"] == conn_id}
    assert set(lines) == {"handler", "on_close"}, log
    want = expected(
        initiator="server",
        code=1012,
        clean=True,
        received=close(1012),
        received_then_sent=False,
        messages_received=1,
        messages_sent=1,
    )
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    assert lines["handler"]["disconnect"] == close(1012)
