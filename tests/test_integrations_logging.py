"""The sanitising of peer text, and the logging hook: pure, in-process, then a real server.

* ``sanitize_reason``: exact escapes, then properties (hypothesis): printable, bounded,
  UTF-8-encodable, and read back to the input with ``ast.literal_eval`` unless cut.
* ``LogCloseHook`` / ``log_close``: levels, the line, the ``ws_close`` extra, per scenario,
  on contexts fed by hand and through the middleware.
* Real uvicorn (``server`` marker): hostile close reasons from a raw-socket client reach
  neither the plain-text log nor the JSON log raw.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware
from asgi_ws_close._servers import SERVERS
from asgi_ws_close._tracker import CloseTracker
from asgi_ws_close._types import Message, Receive, Scope, Send
from asgi_ws_close.integrations import ELLIPSIS, MAX_REASON_LENGTH, sanitize_reason
from asgi_ws_close.integrations.logging import EXTRA_KEY, LogCloseHook, close_log_fields, log_close
from tests.support.asgi import drive, echo

# Sanitising: exact cases.


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("", ""),
        ("bye", "bye"),
        ("going away, see you", "going away, see you"),
        ("héllo wörld ✓ 😀", "héllo wörld ✓ 😀"),
        ("a\nb", "a\\nb"),
        ("a\r\nINFO forged line", "a\\r\\nINFO forged line"),
        ("tab\there", "tab\\there"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("nul\x00byte", "nul\\x00byte"),
        ("del\x7f", "del\\x7f"),
        ("c1 \x85 \x9b", "c1 \\x85 \\x9b"),
        ("nbsp\xa0", "nbsp\\xa0"),
        ("bidi \u202egnp.exe", "bidi \\u202egnp.exe"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("line\u2028sep", "line\\u2028sep"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("private \U000f0000 plane", "private \\U000f0000 plane"),
        # The backslash and the ellipsis are escaped so that the output has one reading.
        ("a\\x1b", "a\\\\x1b"),
        ("\\", "\\\\"),
        ("wait…", "wait\\u2026"),
    ],
)
def test_sanitize_reason_escapes(reason: str, expected: str) -> None:
    assert sanitize_reason(reason) == expected


def test_sanitize_reason_returns_printable_reasons_themselves() -> None:
    reason = "x" * MAX_REASON_LENGTH
    assert sanitize_reason(reason) is reason


@pytest.mark.parametrize(
    ("reason", "max_length", "expected"),
    [
        ("x" * 124, 123, "x" * 122 + ELLIPSIS),
        ("abcdef", 6, "abcdef"),
        ("abcdefg", 6, "abcde" + ELLIPSIS),
        ("abcdefg", 1, ELLIPSIS),
        # Cut on an escape boundary, never inside "\x1b".
        ("ab\x1bcd", 6, "ab" + ELLIPSIS),
        ("ab\x1bc", 7, "ab\\x1bc"),
        ("ab\x1bcd", 7, "ab\\x1b" + ELLIPSIS),
        ("\n" * 100, 10, "\\n" * 4 + ELLIPSIS),
        # 61 two-byte characters are 122 bytes on the wire and 61 characters here: kept.
        ("é" * 61, 123, "é" * 61),
        ("😀" * 200, 123, "😀" * 122 + ELLIPSIS),
    ],
)
def test_sanitize_reason_caps_the_length_with_an_ellipsis(reason: str, max_length: int, expected: str) -> None:
    result = sanitize_reason(reason, max_length)
    assert result == expected
    assert len(result) <= max_length


def test_sanitize_reason_work_is_bounded_by_the_cap() -> None:
    class Counted(str):
        # Counts the characters sanitize_reason pulls out of it.
        pulled = 0

        def __iter__(self) -> Iterator[str]:
            for char in str.__iter__(self):
                Counted.pulled += 1
                yield char

    result = sanitize_reason(Counted("\x1b" * 1_000_000), 50)
    assert result == "\\x1b" * 12 + ELLIPSIS
    # Escaping a million characters to keep 12 would be wasted: it stops once past the cap.
    assert Counted.pulled == 13


@pytest.mark.parametrize("max_length", [0, -1])
def test_sanitize_reason_rejects_a_cap_below_one(max_length: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        sanitize_reason("bye", max_length)


def _read_back(sanitized: str) -> str:
    # Our escapes are Python's: a string literal of the output is the input. Quotes are not
    # escaped by sanitize_reason, so escape them for the literal.
    result = ast.literal_eval('"' + sanitized.replace('"', '\\"') + '"')
    assert isinstance(result, str)
    return result


@given(st.text(max_size=400), st.integers(min_value=1, max_value=300))
def test_sanitize_reason_properties(reason: str, max_length: int) -> None:
    result = sanitize_reason(reason, max_length)
    assert len(result) <= max_length
    assert result.isprintable()
    result.encode("utf-8")  # never a lone surrogate
    full = sanitize_reason(reason, 10 * len(reason) + 1)  # 10: the longest escape, \UXXXXXXXX
    assert _read_back(full) == reason
    if result.endswith(ELLIPSIS):
        assert full.startswith(result[: -len(ELLIPSIS)])
        assert len(full) > max_length
    else:
        assert result == full


@given(st.binary(max_size=123))
def test_sanitize_reason_of_any_decoded_close_payload(payload: bytes) -> None:
    # What servers hand over: valid UTF-8, or what a lenient decode makes of the rest.
    for reason in (payload.decode("utf-8", "replace"), payload.decode("latin-1")):
        result = sanitize_reason(reason)
        assert result.isprintable()
        assert len(result) <= MAX_REASON_LENGTH


# Contexts fed by hand: the scenarios of the README's semantics table.


class _Clock:
    # CloseTracker reads its clock at start and at the end: 0.0, then 1.5.
    def __init__(self) -> None:
        self._times = iter([0.0, 1.5])

    def __call__(self) -> float:
        return next(self._times)


def _tracker() -> CloseTracker:
    return CloseTracker(clock=_Clock(), wall_clock=lambda: 1_700_000_000.0)


def _accepted() -> CloseTracker:
    tracker = _tracker()
    tracker.receive({"type": "websocket.connect"})
    tracker.send({"type": "websocket.accept"})
    return tracker


def client_closes(code: int, reason: str | None) -> CloseContext:
    # reason=None: no reason key at all, as in uvicorn's shutdown disconnect (1012).
    tracker = _accepted()
    tracker.receive({"type": "websocket.receive", "text": "hi"})
    tracker.send({"type": "websocket.send", "text": "hi"})
    disconnect: dict[str, object] = {"type": "websocket.disconnect", "code": code}
    if reason is not None:
        disconnect["reason"] = reason
    tracker.receive(disconnect)
    tracker.app_exited()
    return CloseContext._of(tracker)


def app_closes(code: int, reason: str) -> CloseContext:
    tracker = _accepted()
    tracker.send({"type": "websocket.close", "code": code, "reason": reason})
    tracker.receive({"type": "websocket.disconnect", "code": code, "reason": reason})
    tracker.app_exited()
    return CloseContext._of(tracker)


def transport_lost() -> CloseContext:
    tracker = _accepted()
    tracker.receive({"type": "websocket.disconnect", "code": 1006})
    tracker.app_exited()
    return CloseContext._of(tracker)


def app_raises(error: BaseException) -> CloseContext:
    tracker = _accepted()
    tracker.app_exited(error)
    return CloseContext._of(tracker)


def rejected() -> CloseContext:
    tracker = _tracker()
    tracker.receive({"type": "websocket.connect"})
    tracker.send({"type": "websocket.close", "code": 4001})
    tracker.app_exited()
    return CloseContext._of(tracker)


def _scope(path: str = "/ws") -> Scope:
    return {"type": "websocket", "path": path, "query_string": b"", "headers": [], "client": ["127.0.0.1", 50123]}


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="asgi_ws_close"):
        yield caplog


@pytest.mark.parametrize(
    ("context", "level", "message"),
    [
        (
            client_closes(4001, "bye"),
            logging.INFO,
            "WebSocket /ws closed by client after 1.500 s, clean: 4001 (private use) bye",
        ),
        (
            client_closes(1005, ""),
            logging.INFO,
            "WebSocket /ws closed by client after 1.500 s, clean: 1005 (no status received [internal])",
        ),
        (
            app_closes(4003, "nope"),
            logging.INFO,
            "WebSocket /ws closed by app after 1.500 s, clean: 4003 (private use) nope",
        ),
        (
            client_closes(1012, None),
            logging.INFO,
            "WebSocket /ws closed by server after 1.500 s, clean: 1012 (service restart)",
        ),
        (
            client_closes(1002, "invalid status code"),
            logging.WARNING,
            "WebSocket /ws closed by server after 1.500 s, not clean: 1002 (protocol error) invalid status code",
        ),
        (
            transport_lost(),
            logging.WARNING,
            "WebSocket /ws closed by nobody after 1.500 s, not clean: 1006 (abnormal closure [internal])",
        ),
        (
            app_raises(RuntimeError("boom")),
            logging.WARNING,
            "WebSocket /ws closed by app after 1.500 s, not clean, app raised RuntimeError: "
            "1006 (abnormal closure [internal])",
        ),
        (
            rejected(),
            logging.WARNING,
            "WebSocket /ws rejected by the app (HTTP 403) after 1.500 s, not clean: 1006 (abnormal closure [internal])",
        ),
    ],
    ids=["client", "client-empty", "app", "server-restart", "server-protocol-error", "lost", "app-raised", "rejected"],
)
def test_log_close_levels_and_lines(
    log: pytest.LogCaptureFixture, context: CloseContext, level: int, message: str
) -> None:
    log_close(context, _scope())
    [record] = log.records
    assert record.name == "asgi_ws_close"
    assert record.levelno == level
    assert record.getMessage() == message
    assert record.exc_info is None  # the server logs the app's traceback, not us
    fields = getattr(record, EXTRA_KEY)
    assert fields == close_log_fields(context, _scope())
    json.dumps(fields)  # JSON formatters can take it as it is


def test_extra_has_every_field_of_to_dict_plus_path_and_client() -> None:
    context = client_closes(4001, "bye")
    fields = close_log_fields(context, _scope())
    assert fields == {**context.to_dict(), "path": "/ws", "client": "127.0.0.1:50123"}
    assert fields["duration"] == 1.5
    assert fields["outcome"] == "client_closed"
    assert fields["http_version"] is None  # a tracker made by hand, from no scope
    assert fields["messages_received"] == fields["messages_sent"] == 1


@pytest.mark.parametrize(
    ("context", "outcome"),
    [
        (client_closes(4001, "bye"), "client_closed"),
        (client_closes(1005, ""), "client_closed"),
        (app_closes(4003, "nope"), "app_closed"),
        (client_closes(1012, None), "server_shutdown"),
        (client_closes(1002, "invalid status code"), "server_error"),
        (transport_lost(), "dropped"),
        (app_raises(RuntimeError("boom")), "app_error"),
        (rejected(), "rejected"),
    ],
    ids=["client", "client-empty", "app", "server-restart", "server-protocol-error", "lost", "app-raised", "rejected"],
)
def test_extra_has_the_outcome(log: pytest.LogCaptureFixture, context: CloseContext, outcome: str) -> None:
    log_close(context, _scope())
    [record] = log.records
    fields = getattr(record, EXTRA_KEY)
    assert (fields["outcome"], fields["http_version"]) == (outcome, None)
    assert "outcome" not in fields["unknown"]


def test_extra_has_an_unknown_outcome_as_none(log: pytest.LogCaptureFixture) -> None:
    # granian reads an empty close frame and a drop alike (1005, no reason key): no guess.
    tracker = CloseTracker(clock=_Clock(), quirks=SERVERS["granian"], http_version="1.1")
    tracker.receive({"type": "websocket.connect"})
    tracker.send({"type": "websocket.accept"})
    tracker.receive({"type": "websocket.disconnect", "code": 1005})
    tracker.app_exited()
    log_close(CloseContext._of(tracker), _scope())
    [record] = log.records
    fields = getattr(record, EXTRA_KEY)
    assert (fields["outcome"], fields["http_version"], fields["server"]) == (None, "1.1", "granian")
    assert "outcome" in fields["unknown"]
    json.dumps(fields)


def test_close_log_fields_without_a_scope_or_from_a_snapshot() -> None:
    context = client_closes(4001, "bye")
    assert close_log_fields(context.snapshot()) == context.to_dict()


HOSTILE = "bye\r\nCRITICAL root: forged \x1b[2J\x1b[31mred\x00\u202e" + "é" * 40


def test_hostile_reasons_are_sanitised_in_the_line_and_in_extra(log: pytest.LogCaptureFixture) -> None:
    context = client_closes(4001, HOSTILE)
    log_close(context, _scope())
    [record] = log.records
    line = record.getMessage()
    assert line.isprintable()
    assert line.endswith(sanitize_reason(HOSTILE))
    fields = getattr(record, EXTRA_KEY)
    assert fields["reason"] == sanitize_reason(HOSTILE)
    assert fields["received"] == {"code": 4001, "reason": sanitize_reason(HOSTILE)}
    for value in _strings(fields):
        assert value.isprintable()
        assert len(value) <= MAX_REASON_LENGTH


def test_sent_and_requested_reasons_are_sanitised_too() -> None:
    fields = close_log_fields(app_closes(4003, "a\nb"), _scope())
    assert fields["reason"] == "a\\nb"
    assert fields["sent"] == fields["requested"] == {"code": 4003, "reason": "a\\nb"}


def test_app_errors_name_the_type_in_the_line_and_the_sanitised_message_in_extra(
    log: pytest.LogCaptureFixture,
) -> None:
    log_close(app_raises(ValueError("bad input: \n\x1b[31m1000 (OK) fine")), _scope())
    [record] = log.records
    assert "1000 (OK) fine" not in record.getMessage()
    assert getattr(record, EXTRA_KEY)["error"] == {
        "type": "ValueError",
        "message": "bad input: \\n\\x1b[31m1000 (OK) fine",
    }


def test_an_error_whose_str_raises_still_logs() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    fields = close_log_fields(app_raises(Unprintable()), _scope())
    assert fields["error"] == {"type": Unprintable.__qualname__, "message": "<unprintable>"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ws", "/ws"),
        ("/chat/é", "/chat/%C3%A9"),
        # Decoded by the server from %0A and %20: re-encoded, so it cannot pose as a field.
        (
            "/x\n closed by client after 1.000 s, clean: 1000 (OK)",
            "/x%0A%20closed%20by%20client%20after%201.000%20s%2C%20clean%3A%201000%20%28OK%29",
        ),
        ("/a%2Fb", "/a%252Fb"),
    ],
)
def test_the_path_is_percent_encoded_like_uvicorns_access_log(path: str, expected: str) -> None:
    assert close_log_fields(client_closes(1000, ""), _scope(path))["path"] == expected


@pytest.mark.parametrize("client", [None, [], ["only-host"], "not a pair"])
def test_odd_client_addresses_are_none(client: Any) -> None:
    scope = {**_scope(), "client": client}
    assert close_log_fields(client_closes(1000, ""), scope)["client"] is None


def test_custom_logger_levels_and_cap(log: pytest.LogCaptureFixture) -> None:
    hook = LogCloseHook("asgi_ws_close.custom", clean_level=logging.DEBUG, abnormal_level=logging.ERROR, max_length=10)
    hook(client_closes(4001, "a rather long reason"), _scope())
    hook(transport_lost(), _scope())
    clean, abnormal = log.records
    assert (clean.name, clean.levelno) == ("asgi_ws_close.custom", logging.DEBUG)
    assert clean.getMessage().endswith("4001 (private use) a rather " + ELLIPSIS)
    assert (abnormal.name, abnormal.levelno) == ("asgi_ws_close.custom", logging.ERROR)
    assert repr(hook) == "<LogCloseHook logger='asgi_ws_close.custom' clean=DEBUG abnormal=ERROR>"


def test_a_logger_object_is_accepted(log: pytest.LogCaptureFixture) -> None:
    hook = LogCloseHook(logging.getLogger("asgi_ws_close.obj"))
    hook(client_closes(1000, ""), _scope())
    assert [record.name for record in log.records] == ["asgi_ws_close.obj"]


def test_nothing_is_built_for_a_disabled_level(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asgi_ws_close.integrations.logging as module

    def fail(*args: object, **kwargs: object) -> dict[str, Any]:
        raise AssertionError("fields built for a disabled level")

    monkeypatch.setattr(module, "close_log_fields", fail)
    with caplog.at_level(logging.WARNING, logger="asgi_ws_close"):
        log_close(client_closes(1000, ""), _scope())
    assert caplog.records == []


def test_nothing_of_the_record_is_read_when_neither_level_is_enabled(caplog: pytest.LogCaptureFixture) -> None:
    # The logger is above both levels (as in production at ERROR): the hook returns before it
    # reads a single fact of the record.
    class Unread:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the record's {name} was read")

    with caplog.at_level(logging.ERROR, logger="asgi_ws_close"):
        log_close(Unread(), _scope())  # type: ignore[arg-type]
    assert caplog.records == []


def test_max_length_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LogCloseHook(max_length=0)


def test_a_live_connection_logs_its_state(log: pytest.LogCaptureFixture) -> None:
    closing = _accepted()
    closing.send({"type": "websocket.close", "code": 1000})
    log_close(CloseContext._of(_accepted()), _scope())
    log_close(CloseContext._of(closing), _scope())
    assert [(record.levelno, record.getMessage()) for record in log.records] == [
        (logging.WARNING, "WebSocket /ws open"),  # not known to be clean
        (logging.WARNING, "WebSocket /ws closing"),
    ]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


# Through the middleware, in process.


async def _drive(app: Any, inbound: list[Message], path: str = "/ws") -> list[Message]:
    return await drive(app, inbound, _scope(path))


def test_log_close_as_one_of_several_hooks(log: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def failing(context: CloseContext, scope: Scope) -> None:
        raise RuntimeError("a broken hook")

    def after(context: CloseContext, scope: Scope) -> None:
        seen.append(context.reason)

    app = WebSocketCloseMiddleware(echo, on_close=[failing, log_close, after], count_messages=True)
    asyncio.run(
        _drive(
            app,
            [
                {"type": "websocket.connect"},
                {"type": "websocket.receive", "text": "hi"},
                {"type": "websocket.disconnect", "code": 4001, "reason": "bye\n"},
            ],
        )
    )
    assert seen == ["bye\n"]  # hooks get the raw context; only what we log is sanitised
    lines = [(record.levelno, record.getMessage()) for record in log.records]
    assert lines[0][0] == logging.ERROR and "on_close hook" in lines[0][1]  # the core's report
    assert lines[1][0] == logging.INFO
    assert lines[1][1].startswith("WebSocket /ws closed by client after ")
    assert lines[1][1].endswith(", clean: 4001 (private use) bye\\n")
    assert getattr(log.records[1], EXTRA_KEY)["messages_received"] == 1
    assert getattr(log.records[1], EXTRA_KEY)["outcome"] == "client_closed"


async def _close_4003(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 4003, "reason": "nope"})
    await receive()


@pytest.mark.parametrize("http_version", ["1.1", "2"])
@pytest.mark.parametrize(
    ("app", "inbound", "outcome"),
    [
        (echo, [{"type": "websocket.disconnect", "code": 1000, "reason": ""}], "client_closed"),
        (_close_4003, [{"type": "websocket.disconnect", "code": 4003, "reason": "nope"}], "app_closed"),
        (echo, [{"type": "websocket.disconnect", "code": 1006}], "dropped"),
    ],
    ids=["client_closed", "app_closed", "dropped"],
)
def test_the_middleware_puts_outcome_and_http_version_in_extra(
    log: pytest.LogCaptureFixture, app: Any, inbound: list[Message], outcome: str, http_version: str
) -> None:
    pending: list[Message] = [{"type": "websocket.connect"}, *inbound]

    async def receive() -> Message:
        return pending.pop(0)

    async def send(message: Message) -> None:
        pass

    scope = {**_scope(), "http_version": http_version}
    asyncio.run(WebSocketCloseMiddleware(app, on_close=log_close)(scope, receive, send))
    [record] = log.records
    fields = getattr(record, EXTRA_KEY)
    assert (fields["outcome"], fields["http_version"]) == (outcome, http_version)
    json.dumps(fields)


# A real server: hostile reasons from a raw client.

HOSTILE_REASONS: list[bytes] = [
    b"bye",
    b"line one\nWARNING forged line two",
    b"\r\n\r\nHTTP/1.1 200 OK",
    b"\x1b[2J\x1b[H\x1b[31mred alert\x1b[0m",
    b"nul\x00in the middle",
    b"\x7f\x08\x08\x08backspaces",
    "c1 \u0085 \u009b31m".encode(),
    "bidi \u202egnp.exe".encode(),
    ("é" * 61).encode(),  # 122 bytes: the longest multibyte reason that fits
    ("😀" * 30).encode(),  # 120 bytes
    b"\\x1b looks like an escape",
]


@pytest.mark.server
def test_hostile_reasons_from_real_clients_never_reach_the_logs_raw(tmp_path: Path) -> None:
    from tests.support.obsapp import raw_close, read_json_lines, read_text_lines, run_uvicorn, wait_until

    payloads = [(4000 + i).to_bytes(2, "big") + reason for i, reason in enumerate(HOSTILE_REASONS)]
    # Invalid UTF-8: the server fails the connection (1007) with a reason of its own.
    payloads.append((4100).to_bytes(2, "big") + b"bad \xff\xfe utf-8")
    with run_uvicorn(tmp_path / "obs") as server:

        async def clients() -> list[bytes | None]:
            return list(await asyncio.gather(*(raw_close(server.port, f"/c/{i}", p) for i, p in enumerate(payloads))))

        replies = asyncio.run(clients())
        # The server echoed every valid close, and answered the invalid one with 1007.
        assert replies[:-1] == payloads[:-1]
        assert replies[-1] is not None and replies[-1][:2] == (1007).to_bytes(2, "big")
        wait_until(lambda: len(read_json_lines(server.directory)) >= len(payloads), 10, server.describe)
        texts = read_text_lines(server.directory)
        structured = {line["ws_close"]["path"]: line for line in read_json_lines(server.directory)}

    assert len(texts) == len(structured) == len(payloads)
    for text in texts:
        assert text.isprintable(), text
    for i, reason in enumerate(HOSTILE_REASONS):
        line = structured[f"/c/{i}"]
        expected = sanitize_reason(reason.decode("utf-8"))
        assert line["level"] == "INFO"
        assert line["ws_close"]["initiator"] == "client"
        assert line["ws_close"]["outcome"] == "client_closed"
        assert line["ws_close"]["http_version"] == "1.1"
        assert line["ws_close"]["code"] == 4000 + i
        assert line["ws_close"]["reason"] == expected
        assert line["message"].endswith(f": {4000 + i} (private use) {expected}")
        assert f"INFO {line['message']}" in texts
    invalid = structured[f"/c/{len(HOSTILE_REASONS)}"]
    assert invalid["level"] == "WARNING"
    assert (invalid["ws_close"]["initiator"], invalid["ws_close"]["code"]) == ("server", 1007)
    assert (invalid["ws_close"]["outcome"], invalid["ws_close"]["http_version"]) == ("server_error", "1.1")
    for fields in structured.values():
        for value in _strings(fields):
            assert value.isprintable(), value
