"""WebSockets over HTTP/2 (RFC 8441 extended CONNECT), cleartext h2c with prior knowledge,
driven by a real HTTP/2 client (``tests/support/h2client.py``: h2 + wsproto) against real servers.

What the servers do, measured here (uvicorn 0.55.0, hypercorn 0.18.0, daphne 4.2.3,
granian 2.8.9; zttp 0.0.35 for uvicorn's HTTP/2):

* hypercorn, as launched everywhere else (``--bind``, no extra flag): speaks h2c with prior
  knowledge on its plain socket, announces ``SETTINGS_ENABLE_CONNECT_PROTOCOL=1`` and runs the
  CONNECT stream as an ASGI ``websocket`` scope (answer ``:status 200``). The only server that
  does. Over HTTP/2 as over HTTP/1.1 the client's close code does not reach the app (hypercorn
  hands ``websocket.disconnect`` 1006 for every client close), so the record is the same as the
  HTTP/1.1 matrix's hypercorn cells.
* uvicorn ``--http zttp --http2`` (needs the ``zttp`` package from PyPI; uvicorn 0.55.0 has no
  extra for it): speaks h2c and even announces ENABLE_CONNECT_PROTOCOL=1 (zttp's default
  SETTINGS), but its HTTP/2 protocol has no WebSocket path: the extended CONNECT reaches the app
  as an ``http`` scope, method CONNECT, and Starlette answers 404. No WebSocket, no record.
* uvicorn without ``--http2`` (its default HTTP, or ``--http zttp`` alone): HTTP/1.1 only; the
  h2c preface gets an HTTP/1.1 response.
* daphne: logs "HTTP/2 support enabled", but Twisted offers HTTP/2 only through TLS ALPN; the
  h2c preface gets ``HTTP/1.1 400 Bad Request``. (Twisted's H2 connection never sets
  ENABLE_CONNECT_PROTOCOL either, so TLS would not help: read from its source, not measured.)
* granian (default ``--http auto``, and ``--http 2``): speaks h2c, does not announce
  ENABLE_CONNECT_PROTOCOL, and resets a CONNECT sent anyway (RST_STREAM PROTOCOL_ERROR).
  With ``--http 2`` it logs "Websockets are not supported on HTTP/2 only, ignoring".
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.h2client import (
    ConnectRejected,
    ExtendedConnectNotSupported,
    H2cNotSupported,
    H2WebSocket,
    ServerClose,
    server_settings,
)
from tests.support.process import UVICORN_PORT_LINE
from tests.support.rawclient import RawWebSocket, close_payload
from tests.support.servers import CLOSE_FIELDS, SERVERS, Server, ServerSpec, read_records, run_server, wait_for_records

pytestmark = pytest.mark.server

APP = "tests.support.serverapp:starlette_app"
ENABLE_CONNECT_PROTOCOL = 0x8
PROTOCOL_ERROR = 0x1

#: What hypercorn hands the app for every client-side ending (a close frame with any code, a
#: RST_STREAM, the TCP connection closed): the client's code does not reach it.
HYPERCORN_CLIENT_END = {"disconnect": {"code": 1006, "type": "websocket.disconnect"}}

#: Fields that differ between two records of the same ending.
_PER_CONNECTION = ("opened_at", "closed_at", "duration", "http_version")


@pytest.fixture(scope="module")
def hypercorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    records = tmp_path_factory.mktemp("http2") / "records.jsonl"
    with run_server(APP, "hypercorn", records) as server:
        yield server, records


def _lines(records: Path, conn_id: str, server: Server) -> tuple[dict[str, Any], dict[str, Any]]:
    """The handler line and the on_close record of ``conn_id``; both records must agree."""
    lines = wait_for_records(records, conn_id, server=server)
    by_source = {line["source"]: line for line in lines}
    assert len(lines) == 2, lines
    handler, on_close = by_source["handler"], by_source["on_close"]
    assert handler["record"] == on_close["record"], lines
    record: dict[str, Any] = on_close["record"]
    print(f"{conn_id}: app={handler['app']} record={_without(record, _PER_CONNECTION[:3])}")
    return handler, record


def _without(record: dict[str, Any], keys: tuple[str, ...] = _PER_CONNECTION) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in keys}


def _http1_record(
    server: Server, records: Path, conn_id: str, path: str, drive: Callable[[RawWebSocket], None]
) -> dict[str, Any]:
    """The record of the same scenario over HTTP/1.1 on the same server (``tests/support/rawclient.py``)."""
    with RawWebSocket.connect(server.port, f"{path}{'&' if '?' in path else '?'}id={conn_id}") as ws:
        drive(ws)
    handler, record = _lines(records, conn_id, server)
    assert record["http_version"] == "1.1", record
    return record


def _h1_echo_then(ending: Callable[[RawWebSocket], None]) -> Callable[[RawWebSocket], None]:
    def drive(ws: RawWebSocket) -> None:
        ws.send_text("hello")
        assert ws.recv_text() == "hello"
        ending(ws)

    return drive


def _h1_client_close(ws: RawWebSocket) -> None:
    ws.send_close(close_payload(4001, b"bye"))
    assert ws.read_ending().describe() == "close 4001 'bye'"


def _h1_app_close(ws: RawWebSocket) -> None:
    assert ws.read_ending().describe() == "close 4003 'nope'"
    ws.send_close(close_payload(4003, b"nope"))  # the answer wsproto gives in the HTTP/2 client


def _assert_client_ended(record: dict[str, Any]) -> None:
    """What is knowable when the client ended the connection on hypercorn: the client's code
    never reaches the app (1006 whatever it sent), so the record has it right or not at all."""
    assert record["state"] == "CLOSED"
    assert record["server"] == "hypercorn"
    assert record["sent"] is None and record["requested"] is None, record
    assert (record["error"], record["http_status"], record["sends_after_close"]) == (None, None, 0)
    assert (record["messages_received"], record["messages_sent"]) == (1, 1)


# hypercorn: WebSockets over HTTP/2 work.


def test_hypercorn_announces_extended_connect(hypercorn: tuple[Server, Path]) -> None:
    server, _ = hypercorn
    assert server_settings(server.port)[ENABLE_CONNECT_PROTOCOL] == 1


def test_hypercorn_client_closes(hypercorn: tuple[Server, Path]) -> None:
    """(a) The client closes with 4001 'bye' after one echo: hypercorn echoes the close frame
    and never ends the stream (no END_STREAM, no RST_STREAM); the app is told 1006.

    Measured record (the middleware as of this test): state CLOSED, initiator "client", clean
    True, received_then_sent True, code None and reason "" with "code", "reason", "received"
    unknown: the same as over HTTP/1.1."""
    server, records = hypercorn
    with H2WebSocket.connect(server.port, "/ws/echo?id=h2-client-close") as ws:
        assert ws.status == 200
        ws.send_text("hello")
        assert ws.receive() == "hello"
        assert ws.close(4001, "bye") == ServerClose(4001, "bye")
        wire = ws.linger(0.3)
        assert wire[1:] == ["HEADERS :status=200", "ws TEXT 'hello'", "ws CLOSE 4001 'bye'"], wire
    handler, record = _lines(records, "h2-client-close", server)
    assert handler["app"] == HYPERCORN_CLIENT_END
    _assert_client_ended(record)
    # hypercorn's wsproto state says a close frame came, not its code: the code is unknown.
    assert {key: record[key] for key in ("outcome", "initiator", "code", "reason", "clean", "unknown")} == {
        "outcome": "client_closed",
        "initiator": "client",
        "code": None,
        "reason": "",
        "clean": True,
        "unknown": ["code", "reason", "received"],
    }, record
    http1 = _http1_record(server, records, "h1-client-close", "/ws/echo", _h1_echo_then(_h1_client_close))
    assert _without(record) == _without(http1)
    assert record["http_version"] == "2", record


@pytest.mark.parametrize("how", ["rst_stream", "tcp_close"])
def test_hypercorn_client_ends_abruptly(hypercorn: tuple[Server, Path], how: str) -> None:
    """(b) The client ends without a close frame, by RST_STREAM (CANCEL) on the WebSocket's
    stream, or by closing the TCP connection (FIN, no GOAWAY): the app is told 1006.

    Measured record: state CLOSED, code 1006, clean False, initiator None, nothing unknown:
    the same as a TCP FIN without a close frame over HTTP/1.1."""
    server, records = hypercorn
    conn_id = f"h2-abrupt-{how}"
    with H2WebSocket.connect(server.port, f"/ws/echo?id={conn_id}") as ws:
        ws.send_text("hello")
        assert ws.receive() == "hello"
        if how == "rst_stream":
            ws.reset()
        else:
            ws.drop()
        handler, record = _lines(records, conn_id, server)
        if how == "rst_stream":
            # The connection outlives the stream; the server sends nothing more on it.
            assert ws.linger(0.3)[1:] == ["HEADERS :status=200", "ws TEXT 'hello'"], ws.wire
    assert handler["app"] == HYPERCORN_CLIENT_END
    _assert_client_ended(record)
    assert record["received"] is None, record
    assert {key: record[key] for key in ("outcome", "initiator", "code", "clean", "unknown")} == {
        "outcome": "dropped",
        "initiator": None,
        "code": 1006,
        "clean": False,
        "unknown": [],
    }, record
    http1 = _http1_record(server, records, f"h1-drop-fin-for-{how}", "/ws/echo", _h1_echo_then(RawWebSocket.drop_fin))
    assert _without(record) == _without(http1)
    assert record["http_version"] == "2", record


def test_hypercorn_end_stream_alone_keeps_the_websocket_open(hypercorn: tuple[Server, Path]) -> None:
    """END_STREAM without a close frame does not end the WebSocket on hypercorn 0.18.0 (its
    WebSocket stream ignores the end of the request body): nothing reaches the app until the TCP
    connection closes, then it is the same as (b)."""
    server, records = hypercorn
    conn_id = "h2-end-stream"
    with H2WebSocket.connect(server.port, f"/ws/echo?id={conn_id}") as ws:
        ws.send_text("hello")
        assert ws.receive() == "hello"
        ws.end_stream()
        assert ws.wait_end(1.0) == "open"
        assert [line for line in read_records(records) if line.get("id") == conn_id] == []
    handler, record = _lines(records, conn_id, server)
    assert handler["app"] == HYPERCORN_CLIENT_END
    _assert_client_ended(record)
    assert record["received"] is None and record["clean"] is not True, record
    assert record["http_version"] == "2", record


def test_hypercorn_app_closes(hypercorn: tuple[Server, Path]) -> None:
    """(c) The app closes with 4003 'nope': the client gets the close frame, then END_STREAM;
    it answers the close (wsproto does), and the app is told 1000. Every close fact is known."""
    server, records = hypercorn
    with H2WebSocket.connect(server.port, "/ws/app-close?id=h2-app-close&code=4003&reason=nope") as ws:
        assert ws.wait_end() == "close 4003 'nope'"
        wire = ws.linger(0.3)
        assert wire[1:] == ["HEADERS :status=200", "ws CLOSE 4003 'nope'", "END_STREAM"], wire
    handler, record = _lines(records, "h2-app-close", server)
    assert handler["app"] == {"disconnect": {"code": 1000, "type": "websocket.disconnect"}}
    assert record["state"] == "CLOSED"
    # Every field that says how it ended (state just above), and the outcome.
    assert {key: record[key] for key in ("outcome", *CLOSE_FIELDS) if key != "state"} == {
        "outcome": "app_closed",
        "initiator": "app",
        "code": 4003,
        "reason": "nope",
        "clean": True,
        "received": None,
        "sent": {"code": 4003, "reason": "nope"},
        "requested": {"code": 4003, "reason": "nope"},
        "received_then_sent": False,
        "sends_after_close": 0,
        "error": None,
        "http_status": None,
        "messages_received": 0,
        "messages_sent": 0,
        "server": "hypercorn",
        "unknown": [],
    }
    http1 = _http1_record(server, records, "h1-app-close", "/ws/app-close?code=4003&reason=nope", _h1_app_close)
    assert _without(record) == _without(http1)
    assert record["http_version"] == "2", record


# The other servers: no WebSockets over HTTP/2 cleartext.

_ZTTP = importlib.util.find_spec("zttp") is not None
_NEEDS_ZTTP = pytest.mark.skipif(
    not _ZTTP, reason="uvicorn's HTTP/2 needs the zttp package from PyPI (no uvicorn extra has it)"
)


def _uvicorn(*flags: str) -> ServerSpec:
    def command(app_ref: str, port: int) -> list[str]:
        return ["uvicorn", app_ref, "--host", "127.0.0.1", "--port", str(port), *flags, "--log-level", "info"]

    return ServerSpec("uvicorn", "uvicorn", command, UVICORN_PORT_LINE)


@pytest.fixture
def run_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Run a server from a :class:`ServerSpec` (registered for the test only), with ``flags``."""

    def run(spec: ServerSpec, *flags: str) -> Any:
        name = f"http2-test-{spec.name}"
        monkeypatch.setitem(SERVERS, name, spec)
        return run_server(APP, name, tmp_path / "records.jsonl", extra_args=flags)

    yield run


@_NEEDS_ZTTP
def test_uvicorn_zttp_http2_takes_the_connect_as_http(run_spec: Any, tmp_path: Path) -> None:
    """uvicorn ``--http zttp --http2`` (flags needed for any HTTP/2; the ``zttp`` package too):
    h2c with ENABLE_CONNECT_PROTOCOL=1, but the extended CONNECT becomes an ``http`` scope
    (method CONNECT) that Starlette answers with 404; the middleware records nothing."""
    with run_spec(_uvicorn("--http", "zttp", "--http2")) as server:
        assert server_settings(server.port)[ENABLE_CONNECT_PROTOCOL] == 1
        with pytest.raises(ConnectRejected) as rejected:
            H2WebSocket.connect(server.port, "/ws/echo?id=uvicorn-zttp-h2")
        assert rejected.value.status == 404
        # The access log line may reach the log a moment after the client has its answer.
        server.wait_for_log('"CONNECT /ws/echo?id=uvicorn-zttp-h2 HTTP/2" 404')
    assert read_records(tmp_path / "records.jsonl") == []


@pytest.mark.parametrize(
    ("spec", "answer"),
    [
        pytest.param(_uvicorn(), b"HTTP/1.1 ", id="uvicorn-default"),
        pytest.param(_uvicorn("--http", "zttp"), b"HTTP/1.1 400 ", id="uvicorn-zttp-no-http2", marks=_NEEDS_ZTTP),
        pytest.param(SERVERS["daphne"], b"HTTP/1.1 400 Bad Request", id="daphne"),
    ],
)
def test_no_h2c(run_spec: Any, tmp_path: Path, spec: ServerSpec, answer: bytes) -> None:
    """HTTP/1.1 only on a cleartext socket: the h2c preface gets an HTTP/1.1 response."""
    with run_spec(spec) as server:
        with pytest.raises(H2cNotSupported) as refused:
            H2WebSocket.connect(server.port, "/ws/echo?id=no-h2c")
        assert refused.value.first_bytes.startswith(answer), refused.value
    assert read_records(tmp_path / "records.jsonl") == []


@pytest.mark.parametrize(
    ("flags", "log"),
    [
        pytest.param((), None, id="granian-http-auto"),
        pytest.param(("--http", "2"), "Websockets are not supported on HTTP/2 only, ignoring", id="granian-http-2"),
    ],
)
def test_granian_h2c_without_extended_connect(
    run_spec: Any, tmp_path: Path, flags: tuple[str, ...], log: str | None
) -> None:
    """granian speaks h2c (``--http auto``, its default, or ``--http 2``) without announcing
    ENABLE_CONNECT_PROTOCOL, and resets an extended CONNECT sent anyway."""
    with run_spec(SERVERS["granian"], *flags) as server:
        with pytest.raises(ExtendedConnectNotSupported) as refused:
            H2WebSocket.connect(server.port, "/ws/echo?id=granian")
        assert not isinstance(refused.value, H2cNotSupported)
        assert refused.value.settings, "granian sent an HTTP/2 SETTINGS frame"
        assert ENABLE_CONNECT_PROTOCOL not in refused.value.settings, refused.value.settings
        with pytest.raises(ConnectRejected) as rejected:
            H2WebSocket.connect(server.port, "/ws/echo?id=granian", require_extended_connect=False)
        assert (rejected.value.status, rejected.value.reset_code) == (None, PROTOCOL_ERROR)
        if log is not None:
            server.wait_for_log(log)
    assert read_records(tmp_path / "records.jsonl") == []
