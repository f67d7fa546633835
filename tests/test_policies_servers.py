"""Real-server tests of the close policies: uvicorn (three WebSocket implementations) x policy.

Each test drives one real connection to ``tests/support/policyapp.py`` under uvicorn on 127.0.0.1
(``--ws websockets``, ``websockets-sansio`` and ``wsproto``), checks what went on the wire
with a real client (the raw RFC 6455 client for the exact close frame bytes, the
``websockets`` client for what a strict client library makes of them), then checks the
records that the handler and the ``on_close`` hook wrote. One server runs per ws impl, started
when a test first needs it and shared by the module's tests; it serves every app configuration
(``tests.support.policyapp:app`` picks one by the connection's ``?app=``).

What uvicorn itself does with invalid closes, app errors and closes before accept is measured
in ``docs/servers.md`` (S-d..S-g4, differences 7-10); the ``default`` app's tests
re-check it here, as the reason each policy exists.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close as WireClose

from asgi_ws_close.codes import is_valid_close_code
from tests.support.rawclient import OP_CLOSE, Frame, HandshakeRejected, RawWebSocket, close_payload
from tests.support.servers import Server, close_fields, read_records, record_fields, run_server, wait_for_records

pytestmark = pytest.mark.server

IMPLS = ("websockets", "websockets-sansio", "wsproto")
#: The name the middleware's server detection gives each implementation.
SERVER_NAMES = {impl: f"uvicorn-{impl}" for impl in IMPLS}

CLIENT_TIMEOUT = 5.0
#: How the raw client may see TCP end: FIN or RST, whichever the teardown shows.
TCP_ENDS = ("eof", "reset")


LONG_ASCII = "x" * 200  # 200 bytes
LONG_ACCENTS = "é" * 80  # 160 bytes of UTF-8, 2 per character

#: Closes RFC 6455 does not allow on the wire: (code, reason) as the app asks for them.
INVALID: dict[str, tuple[int, str]] = {
    "reason-200-ascii": (1000, LONG_ASCII),
    "reason-160-bytes": (1000, LONG_ACCENTS),
    "code-999": (999, "bad"),
    "code-1005": (1005, "bad"),
    "code-1006": (1006, "bad"),
    "code-5000": (5000, "bad"),
    "code-5000-reason-160-bytes": (5000, LONG_ACCENTS),
}
#: A valid close, which every policy forwards as it is.
VALID: dict[str, tuple[int, str]] = {"valid-4003": (4003, "nope")}

#: What invalid_close="fix" puts on the wire for each: 123 bytes of 'x'; 61 x 'é' = 122
#: bytes (the 62nd character would straddle byte 123); 1005 -> 1000, any other invalid -> 1011.
FIXED: dict[str, tuple[int, str]] = {
    "reason-200-ascii": (1000, "x" * 123),
    "reason-160-bytes": (1000, "é" * 61),
    "code-999": (1011, "bad"),
    "code-1005": (1000, "bad"),
    "code-1006": (1011, "bad"),
    "code-5000": (1011, "bad"),
    "code-5000-reason-160-bytes": (1011, "é" * 61),
    "valid-4003": (4003, "nope"),
}

#: The rule invalid_close="raise" names in its ValueError (the code is checked first).
RULES: dict[str, str] = {
    "reason-200-ascii": "close reason is 200 bytes of UTF-8: RFC 6455 allows at most 123",
    "reason-160-bytes": "close reason is 160 bytes of UTF-8: RFC 6455 allows at most 123",
    "code-999": "close code 999 cannot be sent in a close frame",
    "code-1005": "close code 1005 cannot be sent in a close frame",
    "code-1006": "close code 1006 cannot be sent in a close frame",
    "code-5000": "close code 5000 cannot be sent in a close frame",
    "code-5000-reason-160-bytes": "close code 5000 cannot be sent in a close frame",
}

#: uvicorn's refusal of a send after the app's own close (RuntimeError, all three impls).
AFTER_CLOSE_ERRORS = {
    "websockets": "Unexpected ASGI message 'websocket.send', after sending 'websocket.close' "
    "or response already completed.",
    "websockets-sansio": "Unexpected ASGI message 'websocket.send', after sending 'websocket.close'.",
    "wsproto": "Unexpected ASGI message 'websocket.send', after sending 'websocket.close'.",
}

_serial = itertools.count()


# Servers: one per ws impl, started on first use, serving every app configuration.


@dataclass(frozen=True)
class Target:
    """One app configuration on one running server, and the server's records file."""

    impl: str
    app: str
    server: Server
    records: Path

    def connection(self, route: str, scenario: str, **params: str) -> tuple[str, str]:
        """A fresh connection id and the request path (with query) for ``route`` of this app."""
        conn_id = f"{self.app}-{scenario}-{next(_serial)}"
        return conn_id, f"{route}?{urlencode({'id': conn_id, 'app': self.app, **params})}"

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.server.port}{path}"


@dataclass
class ServerPool:
    """Runs ``tests.support.policyapp:app --ws <impl>`` once per impl; the stack stops them all.

    ``tests.support.policyapp:app`` hands each connection to the configuration named in its query,
    so one process per impl serves them all: 3 servers per test process rather than 18.
    """

    tmp: pytest.TempPathFactory
    stack: ExitStack
    servers: dict[str, tuple[Server, Path]] = field(default_factory=dict)

    def get(self, impl: str, app: str) -> Target:
        if impl not in self.servers:
            records = self.tmp.mktemp(f"policy-{impl}") / "records.jsonl"
            server = self.stack.enter_context(run_server("tests.support.policyapp:app", impl, records))
            self.servers[impl] = (server, records)
        server, records = self.servers[impl]
        return Target(impl=impl, app=app, server=server, records=records)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    with ExitStack() as stack:
        pool = ServerPool(tmp_path_factory, stack)
        yield pool
    # After every server exited: at most one line per (connection, source).
    for _server, records in pool.servers.values():
        counts = Counter((line["id"], line["source"]) for line in read_records(records))
        duplicates = {key: count for key, count in counts.items() if count > 1}
        assert not duplicates, f"records written more than once in {records}: {duplicates}"


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# Records.


def close(code: int, reason: str = "") -> dict[str, Any]:
    return {"code": code, "reason": reason}


def expected(
    impl: str,
    *,
    initiator: str | None = "app",
    code: int | None,
    clean: bool | None,
    sent: dict[str, Any] | None = None,
    requested: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A record's close fields; ``requested`` defaults to ``sent`` (no repair). The client never
    closes first in these scenarios (``received`` is None), and the policy app counts no
    messages (None, the default)."""
    return record_fields(
        initiator=initiator,
        code=code,
        clean=clean,
        sent=sent,
        requested=sent if requested is None else requested,
        server=SERVER_NAMES[impl],
        **fields,
    )


def fields(line: dict[str, Any]) -> dict[str, Any]:
    return close_fields(line["record"])


def records_of(
    target: Target, conn_id: str, sources: tuple[str, ...] = ("handler", "on_close")
) -> dict[str, dict[str, Any]]:
    """Wait for the records of ``conn_id``: exactly one line per source, and no other."""
    lines = wait_for_records(target.records, conn_id, sources, server=target.server)
    counts = Counter(line["source"] for line in lines)
    assert counts == Counter(sources), f"expected one line from each of {sources}: {lines!r}"
    return {line["source"]: line for line in lines}


def own_close_echo(impl: str, code: int, reason: str) -> dict[str, Any]:
    """The disconnect uvicorn hands the app right after the app's close (docs/servers.md, S-b)."""
    if impl == "websockets":
        return {"type": "websocket.disconnect", "code": 1005}
    return {"type": "websocket.disconnect", "code": code, "reason": reason}


def error_dict(exc_type: str, message: str) -> dict[str, str]:
    return {"type": exc_type, "message": message}


# Clients.


@dataclass(frozen=True)
class RawWire:
    """What the raw client read: the frames before the close, the close payload, the end."""

    frames: tuple[Frame, ...]
    #: The server's close frame payload; None when the connection ended without one.
    close: bytes | None
    #: How the TCP connection ended, after the closing handshake or instead of it: "eof" or
    #: "reset" (which of the two a teardown shows is not a close fact), or "timeout".
    end: str

    @property
    def code(self) -> int | None:
        return None if self.close is None or len(self.close) < 2 else int.from_bytes(self.close[:2], "big")

    @property
    def reason_bytes(self) -> bytes:
        return b"" if self.close is None else self.close[2:]


def _read_until_end(raw: RawWebSocket) -> str:
    try:
        frame = raw.recv_frame()
    except EOFError:
        return "eof"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"
    return f"unexpected frame {frame!r}"


def raw_exchange(target: Target, path: str) -> RawWire:
    """Open ``path`` with the raw client and read until the server's close frame or EOF.

    On a close frame, answer it as ``websockets`` does (echo a valid code, 1002 for an invalid
    one), then read on until the server closes TCP.
    """
    frames: list[Frame] = []
    with RawWebSocket.connect(target.server.port, path, timeout=CLIENT_TIMEOUT) as raw:
        while True:
            try:
                frame = raw.recv_frame()
            except EOFError:
                return RawWire(tuple(frames), None, "eof")
            except ConnectionResetError:
                return RawWire(tuple(frames), None, "reset")
            except TimeoutError:
                return RawWire(tuple(frames), None, "timeout")
            if frame.opcode != OP_CLOSE:
                frames.append(frame)
                continue
            payload = frame.payload
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            raw.send_close(payload if code is not None and is_valid_close_code(code) else close_payload(1002))
            return RawWire(tuple(frames), payload, _read_until_end(raw))


@dataclass(frozen=True)
class WsOutcome:
    """What the ``websockets`` client saw: the close frame it received, and its own."""

    close_rcvd: tuple[int, str] | None
    close_sent: tuple[int, str] | None
    rcvd_then_sent: bool | None


def _wire(close_frame: WireClose | None) -> tuple[int, str] | None:
    return None if close_frame is None else (int(close_frame.code), close_frame.reason)


def ws_exchange(target: Target, path: str) -> WsOutcome:
    """Open ``path`` with the ``websockets`` client and wait for the connection to end."""

    async def run() -> WsOutcome:
        async with connect(
            target.url(path), open_timeout=CLIENT_TIMEOUT, close_timeout=CLIENT_TIMEOUT, ping_interval=None
        ) as ws:
            try:
                message = await asyncio.wait_for(ws.recv(), CLIENT_TIMEOUT)
            except ConnectionClosed as exc:
                assert _wire(exc.rcvd) == _wire(ws.protocol.close_rcvd)
                return WsOutcome(_wire(exc.rcvd), _wire(exc.sent), exc.rcvd_then_sent)
            raise AssertionError(f"expected the connection to close, got a message: {message!r}")

    return asyncio.run(run())


def ws_handshake_status(target: Target, path: str) -> int:
    """Open a connection the server rejects; return the HTTP status the client got."""

    async def run() -> int:
        try:
            async with connect(target.url(path), open_timeout=CLIENT_TIMEOUT, ping_interval=None):
                pass
        except InvalidStatus as exc:
            return int(exc.response.status_code)
        raise AssertionError("the handshake was accepted")

    return asyncio.run(run())


def assert_raw_close(wire: RawWire, code: int, reason: str) -> None:
    """The server sent exactly one close frame, with ``code`` and ``reason``, first, then EOF."""
    encoded = reason.encode("utf-8")
    assert wire.frames == ()
    assert wire.close == close_payload(code, encoded), f"close frame payload {wire.close!r}"
    assert (wire.code, len(wire.reason_bytes)) == (code, len(encoded))
    assert wire.reason_bytes.decode("utf-8") == reason  # strict: cut on a character boundary
    assert wire.end in TCP_ENDS, "the server closes TCP after the closing handshake"


def assert_raw_no_close(wire: RawWire) -> None:
    """The server dropped TCP without a close frame (the client reports 1006)."""
    assert (wire.frames, wire.close) == ((), None)
    assert wire.end in TCP_ENDS, "the server closed TCP (rather than leaving the connection open)"


CLIENTS = ("raw", "websockets")


# invalid_close="fix": the close is repaired before it reaches the server.


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("case", [*INVALID, *VALID])
def test_fix_repairs_the_close_on_the_wire(servers: ServerPool, impl: str, case: str, client: str) -> None:
    target = servers.get(impl, "fix")
    code, reason = {**INVALID, **VALID}[case]
    wire_code, wire_reason = FIXED[case]
    conn_id, path = target.connection("/ws/close", f"fix-{case}", code=str(code), reason=reason)

    if client == "raw":
        assert_raw_close(raw_exchange(target, path), wire_code, wire_reason)
    else:
        # A strict client accepts the repaired close and answers it.
        assert ws_exchange(target, path) == WsOutcome((wire_code, wire_reason), (wire_code, wire_reason), True)

    lines = records_of(target, conn_id)
    want = expected(
        impl,
        code=wire_code,
        reason=wire_reason,
        clean=True,
        sent=close(wire_code, wire_reason),
        requested=close(code, reason),  # what the app asked for, unrepaired
        received_then_sent=False,
    )
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    assert lines["handler"]["send_error"] is None
    # sansio and wsproto echo the close they were handed: the repaired one.
    assert lines["handler"]["disconnect"] == own_close_echo(impl, wire_code, wire_reason)


# invalid_close="raise": send() refuses the close; nothing goes on the wire for it.


@pytest.mark.parametrize("case", list(INVALID))
def test_raise_refuses_the_close_then_the_app_closes_with_1000(servers: ServerPool, impl: str, case: str) -> None:
    target = servers.get(impl, "raise")
    code, reason = INVALID[case]
    conn_id, path = target.connection("/ws/close", f"raise-{case}", code=str(code), reason=reason, on_error="fallback")

    # The first and only close frame is the app's fallback: the refused close never went out.
    assert_raw_close(raw_exchange(target, path), 1000, "")

    lines = records_of(target, conn_id)
    error = lines["handler"]["send_error"]
    assert error["type"] == "builtins.ValueError"
    assert error["message"].startswith(RULES[case])
    assert error["message"].endswith("; nothing was sent (invalid_close='raise')")
    want = expected(impl, code=1000, clean=True, sent=close(1000), received_then_sent=False)
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    assert lines["handler"]["disconnect"] == own_close_echo(impl, 1000, "")


def test_raise_forwards_a_valid_close(servers: ServerPool, impl: str) -> None:
    target = servers.get(impl, "raise")
    conn_id, path = target.connection("/ws/close", "raise-valid", code="4003", reason="nope", on_error="fallback")
    assert_raw_close(raw_exchange(target, path), 4003, "nope")

    lines = records_of(target, conn_id)
    assert lines["handler"]["send_error"] is None
    want = expected(impl, code=4003, reason="nope", clean=True, sent=close(4003, "nope"), received_then_sent=False)
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want


@pytest.mark.parametrize(
    ("app", "wire_code"), [("raise", None), ("raise_error", 1011)], ids=["alone", "with-close_on_error"]
)
def test_raise_then_the_app_lets_the_error_propagate(
    servers: ServerPool, impl: str, app: str, wire_code: int | None
) -> None:
    # Starlette marks its WebSocket closed before the refused send(), so websocket.close()
    # cannot be retried: letting the ValueError escape is the plain Starlette app's way out.
    target = servers.get(impl, app)
    conn_id, path = target.connection("/ws/close", f"{app}-propagate", code="999", reason="bad", on_error="propagate")
    wire = raw_exchange(target, path)

    lines = records_of(target, conn_id)
    error = lines["handler"]["send_error"]
    assert error["type"] == "builtins.ValueError" and error["message"].startswith(RULES["code-999"])
    # The handler wrote its line at once: the refused close changed nothing.
    assert fields(lines["handler"]) == expected(impl, state="OPEN", initiator=None, code=None, clean=None)
    escaped = error_dict("ValueError", error["message"])
    if wire_code is None:
        # uvicorn drops TCP without a close frame when the app raises (S-e): the client sees 1006.
        assert_raw_no_close(wire)
        want = expected(impl, code=1006, clean=False, error=escaped)
    else:
        # close_on_error turns the escaping ValueError into a 1011 close.
        assert_raw_close(wire, wire_code, "")
        want = expected(impl, code=1011, clean=False, sent=close(1011), received_then_sent=False, error=escaped)
    assert fields(lines["on_close"]) == want


# invalid_close="pass" (the default): the invalid close reaches uvicorn as it is.


def pass_error(case: str) -> str:
    """The ProtocolError uvicorn's websockets/sansio send() raises for an invalid close."""
    return "control frame too long" if case.startswith("reason") else "invalid status code"


def wsproto_wire(case: str) -> tuple[int, str]:
    """What wsproto puts on the wire: 1005/1006 -> 1000, others verbatim; reason cut to 123 bytes."""
    code, reason = INVALID[case]
    return (1000 if code in (1005, 1006) else code), FIXED[case][1]


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("case", list(INVALID))
def test_pass_forwards_invalid_closes_and_uvicorn_decides(
    servers: ServerPool, impl: str, case: str, client: str
) -> None:
    target = servers.get(impl, "default")
    code, reason = INVALID[case]
    conn_id, path = target.connection("/ws/close", f"pass-{case}", code=str(code), reason=reason)
    wire = raw_exchange(target, path) if client == "raw" else ws_exchange(target, path)

    lines = records_of(target, conn_id)
    handler = lines["handler"]
    if impl in ("websockets", "websockets-sansio"):
        # send() raises ProtocolError into the app; TCP is dropped without a close frame.
        if client == "raw":
            assert isinstance(wire, RawWire)
            assert_raw_no_close(wire)
        else:
            assert wire == WsOutcome(None, None, None)
        assert handler["send_error"] == error_dict("websockets.exceptions.ProtocolError", pass_error(case))
        assert fields(handler) == expected(
            impl,
            state="CLOSING",
            code=None,
            clean=None,
            sent=close(code, reason),
            received_then_sent=False,
        )
        want = expected(impl, code=1006, clean=False, sent=close(code, reason), received_then_sent=False)
        assert fields(lines["on_close"]) == want
        return

    # wsproto sends a close frame: 1005/1006 rewritten to 1000, 999/5000 verbatim, the
    # reason cut to 123 bytes on a character boundary.
    wire_code, wire_reason = wsproto_wire(case)
    if client == "raw":
        assert isinstance(wire, RawWire)
        assert_raw_close(wire, wire_code, wire_reason)
    elif is_valid_close_code(wire_code):
        assert wire == WsOutcome((wire_code, wire_reason), (wire_code, wire_reason), True)
    else:
        # The websockets client fails the connection on the invalid code: it records no
        # close received and sends 1002 itself.
        assert wire == WsOutcome(None, (1002, "invalid status code"), None)
    assert handler["send_error"] is None
    # The app gets its own close back, unrewritten and uncut (docs/servers.md, difference 7).
    assert handler["disconnect"] == {"type": "websocket.disconnect", "code": code, "reason": reason}
    # The record says what the app sent, which is not what went on the wire. uvicorn's echo
    # of the app's own 1006 is not read as a lost transport: the closing handshake completed.
    want = expected(
        impl,
        code=code,
        reason=reason,
        clean=True,
        sent=close(code, reason),
        received_then_sent=False,
    )
    assert fields(handler) == want
    assert fields(lines["on_close"]) == want


# close_on_error=True: the app raises after accept.


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("app", ["error", "default"])
def test_close_on_error(servers: ServerPool, impl: str, app: str, client: str) -> None:
    target = servers.get(impl, app)
    conn_id, path = target.connection("/ws/raise", f"{app}-raise")
    policy = app == "error"

    if client == "raw":
        wire = raw_exchange(target, path)
        if policy:
            assert_raw_close(wire, 1011, "")
        else:
            assert_raw_no_close(wire)
    else:
        outcome = ws_exchange(target, path)
        # Without the policy uvicorn drops TCP: no close frame either way (the client's 1006).
        assert outcome == (WsOutcome((1011, ""), (1011, ""), True) if policy else WsOutcome(None, None, None))

    lines = records_of(target, conn_id, ("on_close",))
    boom = error_dict("RuntimeError", "boom from the app")
    if policy:
        want = expected(impl, code=1011, clean=False, sent=close(1011), received_then_sent=False, error=boom)
    else:
        want = expected(impl, code=1006, clean=False, error=boom)
    assert fields(lines["on_close"]) == want


# reject_with_close_code=True: the app closes before accept.


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("app", ["reject", "default"])
def test_reject_with_close_code(servers: ServerPool, impl: str, app: str, client: str) -> None:
    target = servers.get(impl, app)
    conn_id, path = target.connection("/ws/reject", f"{app}-reject", code="4401", reason="token expired")
    policy = app == "reject"

    if policy:
        # The handshake completes, and the app's code and reason arrive in a close frame.
        if client == "raw":
            assert_raw_close(raw_exchange(target, path), 4401, "token expired")
        else:
            outcome = ws_exchange(target, path)
            assert outcome == WsOutcome((4401, "token expired"), (4401, "token expired"), True)
    elif client == "raw":
        with pytest.raises(HandshakeRejected) as info:
            RawWebSocket.connect(target.server.port, path, timeout=CLIENT_TIMEOUT)
        assert info.value.status == 403
    else:
        assert ws_handshake_status(target, path) == 403

    lines = records_of(target, conn_id)
    sent = close(4401, "token expired")
    if policy:
        want = expected(
            impl,
            state="REJECTED",
            code=4401,
            reason="token expired",
            clean=True,
            sent=sent,
            received_then_sent=False,
        )
        disconnect = own_close_echo(impl, 4401, "token expired")
    else:
        want = expected(impl, state="REJECTED", code=1006, clean=False, sent=sent, http_status=403)
        disconnect = {"type": "websocket.disconnect", "code": 1006}
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    assert lines["handler"]["disconnect"] == disconnect


@pytest.mark.parametrize("client", CLIENTS)
def test_reject_with_close_code_and_fix_repair_the_rejection(servers: ServerPool, impl: str, client: str) -> None:
    target = servers.get(impl, "reject_fix")
    conn_id, path = target.connection("/ws/reject", "reject-fix", code="1006", reason=LONG_ACCENTS)
    if client == "raw":
        assert_raw_close(raw_exchange(target, path), 1011, "é" * 61)
    else:
        assert ws_exchange(target, path) == WsOutcome((1011, "é" * 61), (1011, "é" * 61), True)

    lines = records_of(target, conn_id)
    want = expected(
        impl,
        state="REJECTED",
        code=1011,
        reason="é" * 61,
        clean=True,
        sent=close(1011, "é" * 61),
        requested=close(1006, LONG_ACCENTS),
        received_then_sent=False,
    )
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    assert lines["handler"]["disconnect"] == own_close_echo(impl, 1011, "é" * 61)


# Sends after close: the server refuses them, the record counts them.


@pytest.mark.parametrize("app", ["default", "fix"])
def test_send_after_close_is_counted(servers: ServerPool, impl: str, app: str) -> None:
    target = servers.get(impl, app)
    conn_id, path = target.connection("/ws/send-after-close", f"{app}-send-after-close")
    # The late send never reaches the wire: the close is the only frame.
    assert_raw_close(raw_exchange(target, path), 1000, "")

    lines = records_of(target, conn_id)
    # uvicorn raises at once (the app's close and its send run with no await between them,
    # so the client's answer cannot have arrived: never ClientDisconnected here).
    assert lines["handler"]["send_error"] == error_dict("builtins.RuntimeError", AFTER_CLOSE_ERRORS[impl])
    want = expected(
        impl,
        code=1000,
        clean=True,
        sent=close(1000),
        received_then_sent=False,
        sends_after_close=1,
    )
    assert fields(lines["handler"]) == want
    assert fields(lines["on_close"]) == want
    assert lines["handler"]["disconnect"] == own_close_echo(impl, 1000, "")
