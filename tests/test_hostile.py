"""Hostile input from raw-socket clients: the middleware and the app keep working, every
record is right, and nothing raw reaches the logs or the metrics.

uvicorn (``--ws websockets``, ``websockets-sansio``, ``wsproto``) serves
``tests.support.reliabilityapp:hostile_app``: the middleware with the recording hook, the library's
ready logging hook (``asgi_ws_close.integrations.logging.log_close``) writing to a file
through a formatter that prints every field as it is, and (with prometheus-client installed)
the Prometheus integration. Raw RFC 6455 clients (``tests/support/rawclient.py``) send close frames
whose reasons hold newlines, CR LF with a forged log line, ANSI escapes, NUL, C1 controls,
bidi overrides, 123-byte multibyte text, invalid UTF-8 and 124 bytes; and 10,000 distinct
close codes (300 in quick mode), valid and invalid, each with a hostile reason.

What the server accepts is decided by its own protocol library (``websockets`` or
``wsproto``), asked here about each payload: an accepted close is recorded as the client's,
byte for byte; a refused one as the server's protocol error (sansio, wsproto) or a lost
connection (legacy websockets reports 1006).
"""

from __future__ import annotations

import itertools
import re
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import pytest
from websockets.exceptions import ProtocolError
from websockets.frames import Close as WebsocketsClose
from wsproto.frame_protocol import FrameProtocol, ParseFailed

from asgi_ws_close import Outcome
from asgi_ws_close.integrations import CODE_LABELS, sanitize_reason
from tests.support.rawclient import OP_CLOSE, Ending, RawWebSocket, close_payload
from tests.support.reliabilityapp import (
    FULL,
    LOG_ENV,
    fetch_text,
    logged_exceptions,
    on_close_lines,
    publish_figures,
    wait_for_on_close,
    wait_quiescent,
)
from tests.support.servers import Server, read_records, run_server

# Full mode runs longer than the project-wide 120 s per test.
pytestmark = [pytest.mark.server, *([pytest.mark.timeout(900)] if FULL else [])]

IMPLS = ("websockets", "websockets-sansio", "wsproto")
APP = "tests.support.reliabilityapp:hostile_app"

CLIENT_TIMEOUT = 10.0
RECORD_TIMEOUT = 120.0
QUIESCE_TIMEOUT = 30.0
#: Raw clients at once, each in a thread.
CLIENTS = 8

#: Close reasons, as bytes on the wire: valid UTF-8 (the server passes them on) ...
HOSTILE_REASONS: dict[str, bytes] = {
    "newline": b"line one\nline two",
    "crlf-forged-line": b"ok\r\nERROR:    Exception in ASGI application",
    "ansi": b"\x1b[31mred\x1b[0m\x1b[2J\x1b]0;title\x07",
    "nul": b"before\x00after",
    "del-c1": "\x7f\x85\x9b".encode(),
    "bidi": "\u202egnp.exe".encode(),
    "zero-width": "a\u200bb\ufeff".encode(),
    "backslash-escape": b"\\x1b[31m is not an escape",
    "ellipsis": "cut\u2026".encode(),
    "euro-123-bytes": ("€" * 41).encode(),
    "accents-123-bytes": ("é" * 61 + "x").encode(),
    "emoji-123-bytes": ("\U0001f600" * 30 + "abc").encode(),
    "empty": b"",
}
#: ... and not: the server refuses the frame.
REFUSED_REASONS: dict[str, bytes] = {
    "invalid-utf8": b"\xff\xfe",
    "truncated-euro": "€".encode()[:2],
    "surrogate": b"\xed\xa0\x80",
    "overlong": b"\xc0\xaf",
    "euro-124-bytes": ("€" * 41).encode() + b"x",
}


def _spread(values: list[int], count: int) -> list[int]:
    # ``count`` of ``values``, evenly spaced, first and last included (distinct: count <= len).
    if count <= 1:
        return values[:count]
    return [values[round(k * (len(values) - 1) / (count - 1))] for k in range(count)]


#: Codes at the edges of RFC 6455's ranges.
BOUNDARY_CODES = [0, 999, 1000, 1003, 1004, 1005, 1006, 1007, 1011, 1014, 1015, 1016, 2999, 3000, 4999, 5000, 65535]


def distinct_codes(count: int) -> list[int]:
    """``count`` distinct close codes: every code that may go on the wire (1000-1015 and
    3000-4999, reserved ones included) and the rest spread evenly over 0-65535; or, when
    ``count`` is smaller, the range boundaries plus even samples of both kinds. 1012 is left
    out (see test_a_client_close_with_1012_is_the_clients)."""
    wire = [code for code in (*range(1000, 1016), *range(3000, 5000)) if code != 1012]
    others = [code for code in range(0x10000) if not (1000 <= code < 1016 or 3000 <= code < 5000)]
    if count >= len(wire):
        return wire + _spread(others, count - len(wire))
    wire = [code for code in wire if code not in BOUNDARY_CODES]
    others = [code for code in others if code not in BOUNDARY_CODES]
    left = count - len(BOUNDARY_CODES)
    return BOUNDARY_CODES + _spread(wire, left // 2) + _spread(others, left - left // 2)


CODE_COUNT = 10_000 if FULL else 300


def refusal(impl: str, payload: bytes) -> int | None:
    """The close code with which the server's protocol library refuses a client's close frame
    with this payload, or None if it accepts it."""
    if len(payload) > 125:
        return 1002  # a control frame's payload is at most 125 bytes (5.5)
    if impl == "wsproto":
        protocol = FrameProtocol(client=False, extensions=[])
        mask = b"\x00\x00\x00\x00"
        protocol.receive_bytes(struct.pack("!BB", 0x80 | OP_CLOSE, 0x80 | len(payload)) + mask + payload)
        try:
            list(protocol.received_frames())
        except ParseFailed as exc:
            return int(exc.code)
        return None
    try:
        WebsocketsClose.parse(payload)
    except ProtocolError:
        return 1002
    except UnicodeDecodeError:
        return 1007
    return None


# One server per impl for the module, with its log file.


@dataclass
class Target:
    impl: str
    server: Server
    records: Path
    log: Path
    ids: set[str] = field(default_factory=set)
    serial: Iterator[int] = field(default_factory=itertools.count)

    def path(self, scenario: str) -> tuple[str, str]:
        # The id is in the path too: the logging hook logs the path (not the query).
        conn_id = f"{scenario}-{next(self.serial)}"
        self.ids.add(conn_id)
        return conn_id, f"/ws/echo/{conn_id}?id={conn_id}"


@pytest.fixture(scope="module", params=IMPLS)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    impl: str = request.param
    directory = tmp_path_factory.mktemp(f"hostile-{impl}")
    records, log = directory / "records.jsonl", directory / "close.log"
    with pytest.MonkeyPatch.context() as env:
        env.setenv(LOG_ENV, str(log))
        with run_server(APP, impl, records) as server:
            target = Target(impl, server, records, log)
            yield target
            server_log = server.describe()
    lines = on_close_lines(records)
    assert {conn_id for conn_id, found in lines.items() if len(found) != 1} == set()
    assert lines.keys() == target.ids
    assert logged_exceptions(server_log) == [], server_log


def close_with(port: int, path: str, payload: bytes) -> Ending:
    with RawWebSocket.connect(port, path, timeout=CLIENT_TIMEOUT) as raw:
        raw.send_close(payload)
        return raw.read_ending()


def expected_record(impl: str, payload: bytes, disconnect: dict[str, Any], ending: Ending) -> dict[str, Any]:
    """The close fields for a client's close frame with ``payload`` (the server's words,
    ``disconnect``, decide the reason of a refusal)."""
    refused = refusal(impl, payload)
    if refused is None:
        (code,) = struct.unpack("!H", payload[:2])
        close = {"code": code, "reason": payload[2:].decode("utf-8")}
        return {"initiator": "client", **close, "clean": True, "received": close, "received_then_sent": True}
    if impl == "websockets":
        # Legacy websockets fails the connection and tells the app 1006, as for a drop; its
        # protocol object holds the close frame it sent, which the record says: the client's view.
        assert disconnect["code"] == 1006, disconnect
        assert ending.kind == "close" and ending.code == refused, ending
        close = {"code": refused, "reason": ending.reason}
    else:
        assert disconnect["code"] == refused, disconnect
        close = {"code": refused, "reason": disconnect["reason"]}
    return {"initiator": "server", **close, "clean": False, "received": close, "received_then_sent": False}


_LOGGED_PATH = re.compile(r"WebSocket /ws/echo/(\S+) ")


def check_connections(target: Target, sent: dict[str, tuple[bytes, Ending]]) -> None:
    """Every connection's records are right, its log line is one printable line with the
    sanitised reason, and the app still serves a normal connection."""
    records = wait_for_on_close(target.records, set(sent), RECORD_TIMEOUT, target.server.describe)
    handlers = {line["id"]: line for line in read_records(target.records) if line["source"] == "handler"}
    wrong: dict[str, Any] = {}
    for conn_id, (payload, ending) in sent.items():
        [on_close] = records[conn_id]
        handler = handlers[conn_id]
        want = expected_record(target.impl, payload, handler["disconnect"], ending)
        refused = refusal(target.impl, payload)
        if refused is None:
            wire_ok = ending == Ending("close", payload)  # the server echoes the client's close
        else:
            wire_ok = ending.kind == "eof" or ending.code == refused
        for line in (on_close, handler):
            got = {key: line["record"][key] for key in want}
            if got != want or not (line["current"] and line["scoped"]) or not wire_ok:
                wrong[f"{conn_id}/{line['source']}"] = (payload, ending, got, want)
    assert not wrong, f"{len(wrong)} wrong, e.g. {list(wrong.items())[:3]}"

    wait_quiescent(target.server.port, QUIESCE_TIMEOUT)  # every hook has run
    lines = target.log.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "the log ends with a complete line"
    raw = [line for line in lines[:-1] if not line.isprintable()]
    assert raw == [], f"raw control characters reached the log: {raw[:3]!r}"
    by_id: dict[str, list[str]] = {}
    for line in lines:
        match = _LOGGED_PATH.search(line)
        if match:
            by_id.setdefault(match[1], []).append(line)
    for conn_id in sent:
        mine = by_id.get(conn_id, [])
        assert len(mine) == 1, (conn_id, mine)
        reason = records[conn_id][0]["record"]["reason"]
        assert f"reason={sanitize_reason(reason)} |" in mine[0], (reason, mine[0])

    server_log = target.server.log()
    assert logged_exceptions(server_log) == [], server_log
    assert re.search(r"[\x00-\x08\x0b-\x1f\x7f]", server_log) is None, "raw control characters in uvicorn's log"

    # The app keeps working.
    conn_id, path = target.path("after")
    with RawWebSocket.connect(target.server.port, path, timeout=CLIENT_TIMEOUT) as client:
        client.send_text("still there?")
        assert client.recv_text() == "still there?"
        client.send_close(close_payload(1000))
        assert client.read_ending() == Ending("close", close_payload(1000))
    [line] = wait_for_on_close(target.records, {conn_id}, RECORD_TIMEOUT, target.server.describe)[conn_id]
    assert (line["record"]["initiator"], line["record"]["code"], line["record"]["clean"]) == ("client", 1000, True)


def test_hostile_reasons(target: Target) -> None:
    sent: dict[str, tuple[bytes, Ending]] = {}
    for name, reason in {**HOSTILE_REASONS, **REFUSED_REASONS}.items():
        conn_id, path = target.path(f"reason-{name}")
        payload = close_payload(4000, reason)
        sent[conn_id] = (payload, close_with(target.server.port, path, payload))
    check_connections(target, sent)


def test_many_distinct_codes(target: Target) -> None:
    codes = distinct_codes(CODE_COUNT)
    assert len(set(codes)) == len(codes) == CODE_COUNT
    reasons = list(HOSTILE_REASONS.values())
    jobs = []
    for i, code in enumerate(codes):
        conn_id, path = target.path(f"code-{code}")
        jobs.append((conn_id, path, close_payload(code, reasons[i % len(reasons)])))
    port = target.server.port
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        endings = list(pool.map(lambda job: close_with(port, job[1], job[2]), jobs))
    seconds = time.monotonic() - started
    sent = {conn_id: (payload, ending) for (conn_id, _path, payload), ending in zip(jobs, endings, strict=True)}
    check_connections(target, sent)
    accepted = sum(1 for payload, _ in sent.values() if refusal(target.impl, payload) is None)
    figures = {"impl": target.impl, "codes": len(codes), "accepted": accepted, "seconds": round(seconds, 2)}
    publish_figures("hostile-codes", figures)


#: The values of the closes counter's outcome label: an outcome, or "unknown".
OUTCOME_LABELS = {*get_args(Outcome), "unknown"}

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def test_metrics_labels_stay_bounded(target: Target) -> None:
    pytest.importorskip("prometheus_client")
    # Hostile closes of this test's own, on top of whatever the module's other tests sent.
    for name, reason in {**HOSTILE_REASONS, **REFUSED_REASONS}.items():
        conn_id, path = target.path(f"metrics-{name}")
        close_with(target.server.port, path, close_payload(4321, reason))
    wait_for_on_close(target.records, set(target.ids), RECORD_TIMEOUT, target.server.describe)
    wait_quiescent(target.server.port, QUIESCE_TIMEOUT)
    exposition = fetch_text(target.server.port, "/metrics")

    assert exposition.isascii() and "\x1b" not in exposition and "\x00" not in exposition
    total = 0.0
    for line in exposition.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != "websocket_server_closes_total":
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        assert set(labels) == {"outcome", "initiator", "code", "clean"}, labels
        assert labels["outcome"] in OUTCOME_LABELS, labels
        assert labels["initiator"] in {"client", "app", "server", "none"}, labels
        assert labels["code"] in CODE_LABELS, labels
        assert labels["clean"] in {"true", "false"}, labels
        total += float(match["value"])
    for reason in HOSTILE_REASONS.values():
        text = reason.decode("utf-8")
        assert len(text) < 4 or text not in exposition, "a reason became part of the metrics"
    # One count per connection the server has served.
    assert total == len(on_close_lines(target.records))


def test_a_client_close_with_1012_is_the_clients(target: Target) -> None:
    conn_id, path = target.path("client-1012")
    payload = close_payload(1012, b"forged restart")
    assert close_with(target.server.port, path, payload) == Ending("close", payload)
    [line] = wait_for_on_close(target.records, {conn_id}, RECORD_TIMEOUT, target.server.describe)[conn_id]
    assert (line["record"]["initiator"], line["record"]["code"]) == ("client", 1012)
