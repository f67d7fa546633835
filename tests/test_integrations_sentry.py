"""The Sentry integration, against a real `sentry_sdk.init()` whose transport keeps envelopes.

Starlette and FastAPI apps run under Sentry's own Starlette and FastAPI integrations (which
wrap the whole app in Sentry's ASGI middleware, outside `WebSocketCloseMiddleware`), driven
by Starlette's `TestClient`. Every test gets a fresh client and leaves Sentry uninitialised.
Sentry's Starlette integration patches Starlette's `Middleware` and the `__call__` of the
middleware classes given to it for the rest of the process, as it does in an app; without an
active client the patches pass straight through.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("sentry_sdk", reason="needs sentry-sdk")
pytest.importorskip("fastapi", reason="needs fastapi")

import sentry_sdk
from fastapi import FastAPI
from sentry_sdk import Scope as SentryScope
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from sentry_sdk.transport import Transport
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_ws_close import CloseContext, OnClose, WebSocketCloseMiddleware
from asgi_ws_close._tracker import CloseTracker
from asgi_ws_close._types import ASGIApp, Receive, Scope, Send
from asgi_ws_close.integrations import MAX_REASON_LENGTH, sanitize_reason
from asgi_ws_close.integrations.sentry import (
    BREADCRUMB_CATEGORY,
    CONTEXT_KEY,
    TAG_OUTCOME,
    SentryCloseHook,
    close_sentry_fields,
    sentry_close,
)

CONTEXT_FIELDS = {
    "outcome",
    "state",
    "initiator",
    "code",
    "code_explanation",
    "reason",
    "clean",
    "http_status",
    "http_version",
    "duration",
    "server",
    "unknown",
}


class MemoryTransport(Transport):
    """Keeps every envelope; sends nothing."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


@dataclass
class Captured:
    transport: MemoryTransport
    hooks: list[OnClose] = field(default_factory=list)

    def flush(self) -> list[Envelope]:
        sentry_sdk.flush()
        return list(self.transport.envelopes)

    def events(self) -> list[dict[str, Any]]:
        found = []
        for envelope in self.flush():
            for item in envelope.items:
                if item.type == "event":
                    assert item.payload.json is not None
                    found.append(item.payload.json)
        return found

    def errors(self) -> list[dict[str, Any]]:
        return [event for event in self.events() if "exception" in event]

    def messages(self) -> list[dict[str, Any]]:
        return [event for event in self.events() if "exception" not in event]


@pytest.fixture
def sentry() -> Iterator[Captured]:
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        transport=MemoryTransport,
        integrations=[StarletteIntegration(), FastApiIntegration()],
        # Those two only: the auto-enabled ones would import every framework installed here.
        auto_enabling_integrations=False,
    )
    transport = sentry_sdk.get_client().transport
    assert isinstance(transport, MemoryTransport)
    try:
        yield Captured(transport)
    finally:
        sentry_sdk.flush()
        sentry_sdk.get_client().close()
        # Back to no Sentry at all: no client, nothing left on the scopes of this thread.
        for scope in (
            SentryScope.get_global_scope(),
            SentryScope.get_isolation_scope(),
            SentryScope.get_current_scope(),
        ):
            scope.set_client(None)
            scope.clear()


def capture_after(message: str = "after the close") -> OnClose:
    """A hook that runs after ours: what it captures is "a later event in the same scope"."""

    def hook(context: CloseContext, scope: Scope) -> None:
        sentry_sdk.capture_message(message)

    return hook


async def raise_after_accept(websocket: WebSocket) -> None:
    await websocket.accept()
    raise RuntimeError("handler failed")


async def echo_until_closed(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        try:
            text = await websocket.receive_text()
        except WebSocketDisconnect:
            return
        await websocket.send_text(text)


async def raise_after_client_close(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    # Raised outside the except block: no chained WebSocketDisconnect, whose reason is raw.
    raise RuntimeError("handler failed after the close")


async def reject(websocket: WebSocket) -> None:
    await websocket.close(4003)


def starlette_app(endpoint: Callable[[WebSocket], Any], on_close: OnClose | list[OnClose]) -> Starlette:
    return Starlette(
        routes=[WebSocketRoute("/ws", endpoint)],
        middleware=[Middleware(WebSocketCloseMiddleware, on_close=on_close)],
    )


def fastapi_app(endpoint: Callable[[WebSocket], Any], on_close: OnClose | list[OnClose]) -> FastAPI:
    app = FastAPI()
    app.add_middleware(WebSocketCloseMiddleware, on_close=on_close)
    app.add_api_websocket_route("/ws", endpoint)
    return app


APPS = pytest.mark.parametrize("make_app", [starlette_app, fastapi_app], ids=["starlette", "fastapi"])


def crumbs(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [crumb for crumb in event.get("breadcrumbs", {}).get("values", []) if crumb["category"] == "websocket"]


@APPS
def test_the_error_event_of_a_handler_that_raised_carries_the_close(
    sentry: Captured, make_app: Callable[..., ASGIApp]
) -> None:
    app = make_app(raise_after_accept, sentry_close)
    with TestClient(app) as client, pytest.raises(RuntimeError, match="handler failed"):
        with client.websocket_connect("/ws") as ws:
            ws.receive_text()
    [event] = sentry.errors()
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    close = event["contexts"][CONTEXT_KEY]
    assert set(close) == CONTEXT_FIELDS
    assert close["outcome"] == "app_error"
    assert (close["state"], close["initiator"], close["code"], close["clean"]) == ("CLOSED", "app", 1006, False)
    assert close["reason"] == ""
    # Starlette's TestClient puts no http_version in a WebSocket scope (ASGI makes it optional):
    # the context says the server did not say. A scope that has one: test_isolated_true_...
    assert close["http_version"] is None
    assert isinstance(close["duration"], float)
    assert event["tags"][TAG_OUTCOME] == "app_error"
    # The breadcrumb went in before Sentry captured the exception: it is on the error event.
    [crumb] = crumbs(event)
    assert crumb["level"] == "warning"
    assert crumb["message"].startswith("WebSocket closed by app after ")
    assert "not clean, app raised RuntimeError: 1006" in crumb["message"]
    assert crumb["data"] == {"outcome": "app_error", "initiator": "app", "code": 1006, "clean": False}


@APPS
def test_a_clean_client_close_sends_nothing_and_leaves_no_breadcrumb(
    sentry: Captured, make_app: Callable[..., ASGIApp]
) -> None:
    app = make_app(echo_until_closed, sentry_close)
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
        ws.close(4001, "bye")
    assert sentry.events() == []


@APPS
def test_a_later_event_in_the_scope_of_a_clean_close_has_the_context_but_no_breadcrumb(
    sentry: Captured, make_app: Callable[..., ASGIApp]
) -> None:
    app = make_app(echo_until_closed, [sentry_close, capture_after()])
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        ws.close(4001, "bye")
    [event] = sentry.messages()
    assert event["message"] == "after the close"
    close = event["contexts"][CONTEXT_KEY]
    assert (close["outcome"], close["initiator"], close["code"], close["reason"], close["clean"]) == (
        "client_closed",
        "client",
        4001,
        "bye",
        True,
    )
    assert close["code_explanation"] == "private use"
    assert event["tags"][TAG_OUTCOME] == "client_closed"
    assert crumbs(event) == []


@pytest.mark.parametrize(
    ("endpoint", "code", "outcome", "summary"),
    [
        (echo_until_closed, 1006, "dropped", "WebSocket closed by nobody after "),
        (reject, None, "rejected", "WebSocket rejected by the app (HTTP 403) after "),
    ],
    ids=["dropped", "rejected"],
)
@APPS
def test_an_abnormal_ending_adds_a_breadcrumb(
    sentry: Captured,
    make_app: Callable[..., ASGIApp],
    endpoint: Callable[[WebSocket], Any],
    code: int | None,
    outcome: str,
    summary: str,
) -> None:
    app = make_app(endpoint, [sentry_close, capture_after()])
    with TestClient(app) as client:
        if code is None:
            with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws"):
                pass
        else:
            with client.websocket_connect("/ws") as ws:
                ws.close(code)  # what a server reports for a lost transport
    [event] = sentry.events()
    assert event["contexts"][CONTEXT_KEY]["outcome"] == outcome
    assert event["contexts"][CONTEXT_KEY]["clean"] is False
    assert event["tags"][TAG_OUTCOME] == outcome
    [crumb] = crumbs(event)
    assert (crumb["category"], crumb["level"]) == (BREADCRUMB_CATEGORY, "warning")
    assert crumb["message"].startswith(summary)
    assert crumb["data"]["outcome"] == outcome


def test_each_connection_has_its_own_scope(sentry: Captured) -> None:
    async def report_while_open(websocket: WebSocket) -> None:
        await websocket.accept()
        sentry_sdk.capture_message("while open")
        await websocket.close()

    app = Starlette(
        routes=[WebSocketRoute("/boom", raise_after_accept), WebSocketRoute("/open", report_while_open)],
        middleware=[Middleware(WebSocketCloseMiddleware, on_close=sentry_close)],
    )
    with TestClient(app) as client:
        with pytest.raises(RuntimeError), client.websocket_connect("/boom") as ws:
            ws.receive_text()
        with client.websocket_connect("/open") as ws:
            ws.receive()
    [error] = sentry.errors()
    [message] = sentry.messages()
    assert error["contexts"][CONTEXT_KEY]["outcome"] == "app_error"
    # Nothing of the first connection's ending on the second's event.
    assert CONTEXT_KEY not in message["contexts"]
    assert TAG_OUTCOME not in message.get("tags", {})
    assert crumbs(message) == []


HOSTILE_REASON = (
    "\x1b[2J\x1b[31mred\x1b]0;title\x07"  # ANSI: clear screen, colour, window title
    + "\x00nul\r\nINFO forged log line\n"
    + "\u202eevil\u200b"  # bidi override, zero-width space
    + "\ud800\udfff"  # lone surrogates
    + "A" * 10_000
    + "\x85\x7f"
)
RAW_CHARACTERS = "\x1b\x07\x00\r\u202e\u200b\ud800\udfff\x85\x7f"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@APPS
def test_no_raw_byte_of_a_hostile_reason_reaches_sentry(sentry: Captured, make_app: Callable[..., ASGIApp]) -> None:
    app = make_app(raise_after_client_close, [sentry_close, capture_after()])
    with TestClient(app) as client, pytest.raises(RuntimeError, match="after the close"):
        with client.websocket_connect("/ws") as ws:
            ws.close(4001, HOSTILE_REASON)
    envelopes = sentry.flush()
    error, message = sorted(sentry.events(), key=lambda event: "exception" in event, reverse=True)
    expected = sanitize_reason(HOSTILE_REASON)
    assert len(expected) == MAX_REASON_LENGTH
    for event in (error, message):
        close = event["contexts"][CONTEXT_KEY]
        assert close["reason"] == expected
        assert close["outcome"] == "client_closed"
    # Not clean (the app raised after the client's close): a breadcrumb, sanitised too.
    [crumb] = crumbs(error)
    assert crumb["message"].endswith(expected)
    assert envelopes
    for envelope in envelopes:
        raw = envelope.serialize()
        for char in RAW_CHARACTERS:
            assert char.encode("utf-8", "surrogatepass") not in raw, repr(char)
            # Nor as a JSON escape (\r, \u001b): an odd run of backslashes before it. The
            # sanitised reason's own "\r" (two characters) is "\\r" in JSON, an even run.
            escape = re.escape(json.dumps(char)[1:-1].encode())
            assert not re.search(rb"(?<!\\)(?:\\\\)*" + escape, raw), repr(char)
        # The 10 kB reason is capped wherever it went (here, the CloseContext's repr among
        # the frames' local variables, which Sentry records by default).
        assert max((len(run) for run in re.findall(rb"A+", raw)), default=0) < MAX_REASON_LENGTH
        for item in envelope.items:
            for text in _strings(item.payload.json):
                assert not set(text) & set(RAW_CHARACTERS), text[:200]
                assert "INFO forged log line" not in text.replace("\\r\\nINFO forged log line", "")


def test_record_reason_false_and_breadcrumbs_false(sentry: Captured) -> None:
    hook = SentryCloseHook(record_reason=False, breadcrumbs=False)
    app = starlette_app(raise_after_client_close, [hook, capture_after()])
    with TestClient(app) as client, pytest.raises(RuntimeError):
        with client.websocket_connect("/ws") as ws:
            ws.close(4001, "my name is Alice")
    for event in sentry.events():
        assert set(event["contexts"][CONTEXT_KEY]) == CONTEXT_FIELDS - {"reason"}
        assert crumbs(event) == []
        assert "Alice" not in json.dumps(event["contexts"])


def test_outside_sentrys_middleware_nothing_is_recorded(sentry: Captured, caplog: pytest.LogCaptureFixture) -> None:
    # Wrapped around the Starlette app, our middleware runs its hooks after Sentry's
    # middleware captured the error and left the connection's scope: writing then would
    # leave the context on a scope that outlives the connection.
    hook = SentryCloseHook()
    inner = Starlette(routes=[WebSocketRoute("/ws", raise_after_accept)])
    app = WebSocketCloseMiddleware(inner, on_close=[hook, capture_after()])
    with caplog.at_level(logging.WARNING, logger="asgi_ws_close"), TestClient(app) as client:
        for _ in range(2):
            with pytest.raises(RuntimeError), client.websocket_connect("/ws") as ws:
                ws.receive_text()
    events = sentry.events()
    assert len(sentry.errors()) == 2 and len(sentry.messages()) == 2
    for event in events:
        assert CONTEXT_KEY not in event.get("contexts", {})
        assert TAG_OUTCOME not in event.get("tags", {})
        assert crumbs(event) == []
    warnings = [record for record in caplog.records if "outside Sentry's ASGI middleware" in record.getMessage()]
    assert len(warnings) == 1  # once per hook


def test_isolated_true_records_in_a_scope_of_your_own(sentry: Captured) -> None:
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"

    tracked = WebSocketCloseMiddleware(endpoint, on_close=[SentryCloseHook(isolated=True), capture_after()])

    async def isolating(scope: Scope, receive: Receive, send: Send) -> None:
        with sentry_sdk.isolation_scope():
            # What a server that says which HTTP version the upgrade used passes on.
            await tracked({**scope, "http_version": "1.1"}, receive, send)

    # No `with`: no lifespan, which this bare app does not speak.
    with TestClient(isolating).websocket_connect("/ws") as ws:
        ws.close(1006)
    [event] = sentry.events()
    assert event["contexts"][CONTEXT_KEY]["outcome"] == "dropped"
    assert event["contexts"][CONTEXT_KEY]["http_version"] == "1.1"
    assert [crumb["data"]["outcome"] for crumb in crumbs(event)] == ["dropped"]


def test_without_sentry_the_hook_does_nothing() -> None:
    assert not sentry_sdk.get_client().is_active()
    seen: list[CloseContext] = []
    inner = Starlette(routes=[WebSocketRoute("/ws", echo_until_closed)])
    app = WebSocketCloseMiddleware(inner, on_close=[sentry_close, lambda context, scope: seen.append(context)])
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        ws.close(1006)
    [context] = seen
    assert context.outcome == "dropped"
    assert CONTEXT_KEY not in SentryScope.get_isolation_scope()._contexts


def test_a_live_connection_records_nothing(sentry: Captured) -> None:
    with sentry_sdk.isolation_scope() as scope:
        SentryCloseHook(isolated=True)(CloseContext._of(CloseTracker()), {})
        assert CONTEXT_KEY not in scope._contexts


def test_close_sentry_fields_is_the_sanitised_subset() -> None:
    seen: list[CloseContext] = []
    inner = Starlette(routes=[WebSocketRoute("/ws\x1b", echo_until_closed)])
    app = WebSocketCloseMiddleware(inner, on_close=lambda context, scope: seen.append(context))
    # Percent-encoded in the URL; the scope's path has the raw ESC.
    with TestClient(app) as client, client.websocket_connect("/ws%1b?q=%1b") as ws:
        ws.close(4001, "a\nb")
    [context] = seen
    fields = close_sentry_fields(context)
    assert set(fields) == CONTEXT_FIELDS  # no path, no client, no headers
    assert fields["reason"] == "a\\nb"
    assert "\x1b" not in json.dumps(fields, ensure_ascii=False)
    assert set(close_sentry_fields(context, record_reason=False)) == CONTEXT_FIELDS - {"reason"}
    assert close_sentry_fields(context, max_length=2)["reason"] == "a\u2026"


def test_max_length_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SentryCloseHook(max_length=0)


def test_the_prometheus_and_opentelemetry_recipes_under_sentrys_starlette_integration(sentry: Captured) -> None:
    # Sentry's Starlette integration sets __call__ on whatever Middleware() is given:
    # `app.add_middleware(metrics.middleware)` must survive that (a bound method would not).
    pytest.importorskip("prometheus_client", reason="needs prometheus-client")
    pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from prometheus_client import CollectorRegistry

    from asgi_ws_close.integrations.otel import OpenTelemetryCloseInstrumentation
    from asgi_ws_close.integrations.prometheus import PrometheusCloseMetrics

    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry)
    reader = InMemoryMetricReader()
    otel = OpenTelemetryCloseInstrumentation(meter_provider=MeterProvider(metric_readers=[reader]))
    active = "websocket_server_active_connections"
    inside: list[float | None] = []

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        inside.append(registry.get_sample_value(active))
        raise RuntimeError("handler failed")

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    app.add_middleware(WebSocketCloseMiddleware, on_close=[metrics.on_close, otel.on_close, sentry_close])
    app.add_middleware(metrics.middleware)
    app.add_middleware(otel.middleware)
    with TestClient(app) as client:
        for _ in range(2):
            with pytest.raises(RuntimeError), client.websocket_connect("/ws") as ws:
                ws.receive_text()
    assert inside == [1.0, 1.0]
    assert registry.get_sample_value(active) == 0.0
    labels = {"initiator": "app", "code": "1006", "clean": "false", "outcome": "app_error"}
    assert registry.get_sample_value("websocket_server_closes_total", labels) == 2.0
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        metric.name: [point.value for point in metric.data.data_points]  # type: ignore[union-attr]
        for resource in data.resource_metrics
        for scope_metrics in resource.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name in ("websocket.server.active_connections", "websocket.server.closes")
    }
    assert points == {"websocket.server.active_connections": [0], "websocket.server.closes": [2]}
    errors = sentry.errors()
    assert [event["contexts"][CONTEXT_KEY]["outcome"] for event in errors] == ["app_error", "app_error"]


# Under a real server: uvicorn, a real client, a real TCP drop (which TestClient cannot make).

SERVED_APP = """
import json, os

import sentry_sdk
from sentry_sdk.transport import Transport
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from asgi_ws_close import WebSocketCloseMiddleware
from asgi_ws_close.integrations.sentry import sentry_close


class FileTransport(Transport):
    def capture_envelope(self, envelope):
        with open(os.environ["SENTRY_EVENTS"], "a", encoding="utf-8") as events:
            for item in envelope.items:
                if item.type == "event":
                    events.write(json.dumps(item.payload.json) + "\\n")


sentry_sdk.init(dsn="http://public@127.0.0.1:9/1", transport=FileTransport)


def record(context, scope):
    with open(os.environ["CLOSE_RECORDS"], "a", encoding="utf-8") as records:
        records.write(json.dumps({"path": scope["path"], **context.to_dict()}) + "\\n")


async def raise_after_the_end(websocket):
    await websocket.accept()
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    raise RuntimeError("after the end")


async def raise_at_once(websocket):
    await websocket.accept()
    raise RuntimeError("at once")


app = Starlette(routes=[WebSocketRoute("/after", raise_after_the_end), WebSocketRoute("/at-once", raise_at_once)])
app.add_middleware(WebSocketCloseMiddleware, on_close=[record, sentry_close])
"""


#: A hostile reason a close frame can carry: valid UTF-8 (no lone surrogate), at most 123 bytes.
WIRE_REASON = "\x1b[2J\x1b[31mred\x07\x00\r\nINFO forged log line\n\u202eevil\u200b\x85\x7f"


def _json_lines(path: Any) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line]


@pytest.mark.server
@pytest.mark.timeout(90)
def test_under_uvicorn_each_error_event_carries_the_connections_record(tmp_path: Any) -> None:
    import asyncio

    pytest.importorskip("uvicorn", reason="needs uvicorn")
    pytest.importorskip("websockets", reason="needs websockets")
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from tests.support.prometheus import _PORT_LINES, _launch, _wait

    (tmp_path / "sentryapp.py").write_text(SERVED_APP, encoding="utf-8")
    events, records = tmp_path / "events.jsonl", tmp_path / "records.jsonl"
    env = {**os.environ, "SENTRY_EVENTS": str(events), "CLOSE_RECORDS": str(records), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "uvicorn", "sentryapp:app"]
    argv += ["--app-dir", str(tmp_path), "--host", "127.0.0.1", "--port", "0", "--timeout-graceful-shutdown", "5"]

    async def drive(port: int) -> None:
        url = f"ws://127.0.0.1:{port}"
        options: dict[str, Any] = {"proxy": None, "open_timeout": 10, "close_timeout": 10, "ping_interval": None}
        ws = await connect(f"{url}/after", **options)
        await asyncio.wait_for(ws.close(4001, WIRE_REASON), 10)
        ws = await connect(f"{url}/after", **options)
        ws.transport.abort()  # a TCP drop: no close frame
        await asyncio.wait_for(ws.wait_closed(), 10)
        ws = await connect(f"{url}/at-once", **options)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)

    with _launch(argv, env=env, description="uvicorn sentryapp:app", port_line=_PORT_LINES["uvicorn"]) as server:
        asyncio.run(drive(server.port))
        _wait(
            lambda: len(_json_lines(events)) >= 3 and len(_json_lines(records)) >= 3,
            30,
            lambda: (
                f"3 events and 3 records wanted: {_json_lines(events)!r} {_json_lines(records)!r}; " + server.describe()
            ),
        )
    by_message = {event["exception"]["values"][-1]["value"]: event for event in _json_lines(events)}
    endings = sorted((record["path"], record["outcome"], record["code"]) for record in _json_lines(records))
    assert endings == [("/after", "client_closed", 4001), ("/after", "dropped", 1006), ("/at-once", "app_error", 1006)]
    assert set(by_message) == {"after the end", "at once"} and len(_json_lines(events)) == 3
    for record in _json_lines(records):
        [event] = [
            event
            for event in _json_lines(events)
            if event["contexts"][CONTEXT_KEY]["outcome"] == record["outcome"]
            and event["contexts"][CONTEXT_KEY]["code"] == record["code"]
        ]
        close = event["contexts"][CONTEXT_KEY]
        # The event carries the connection's own record, the reason sanitised.
        assert close == {
            **{key: record[key] for key in CONTEXT_FIELDS},
            "reason": sanitize_reason(record["reason"]),
            # Sentry's serializer keeps floats; the record's duration went through JSON too.
            "duration": pytest.approx(record["duration"]),
        }
        assert close["server"].startswith("uvicorn") and close["http_version"] == "1.1"
        assert event["tags"][TAG_OUTCOME] == record["outcome"]
        # Every ending here is abnormal (the app raised, or the transport was lost).
        [crumb] = crumbs(event)
        assert crumb["data"] == {key: record[key] for key in ("outcome", "initiator", "code", "clean")}
    client_closed = next(e for e in _json_lines(events) if e["contexts"][CONTEXT_KEY]["outcome"] == "client_closed")
    assert client_closed["contexts"][CONTEXT_KEY]["reason"] == sanitize_reason(WIRE_REASON)
    assert "\x1b" not in events.read_text(encoding="utf-8")


def test_a_close_the_server_could_not_tell_has_the_context_but_no_outcome_tag(sentry: Captured) -> None:
    # granian reports an empty close frame and a lost connection alike: the outcome is unknown.
    from asgi_ws_close._servers import SERVERS

    tracker = CloseTracker(quirks=SERVERS["granian"])
    tracker.receive({"type": "websocket.connect"})
    tracker.send({"type": "websocket.accept"})
    tracker.receive({"type": "websocket.disconnect", "code": 1005})
    context = CloseContext._of(tracker)
    assert context.outcome is None
    with sentry_sdk.isolation_scope() as scope:
        SentryCloseHook(isolated=True)(context, {})
        assert scope._contexts[CONTEXT_KEY]["outcome"] is None
        assert TAG_OUTCOME not in scope._tags


def test_if_sentrys_private_marker_is_gone_the_scope_is_trusted(
    sentry: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentry_sdk.integrations import asgi as sentry_asgi

    monkeypatch.setattr(sentry_asgi, "_asgi_middleware_applied", None, raising=False)
    tracker = CloseTracker()
    tracker.receive({"type": "websocket.connect"})
    tracker.send({"type": "websocket.accept"})
    tracker.receive({"type": "websocket.disconnect", "code": 4001, "reason": "bye"})
    with sentry_sdk.isolation_scope() as scope:
        SentryCloseHook()(CloseContext._of(tracker), {})  # isolated=None: trusts the scope now
        assert scope._contexts[CONTEXT_KEY]["code"] == 4001


def test_without_sentry_sdk_the_import_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['sentry_sdk'] = None\n"
        "try:\n    import asgi_ws_close.integrations.sentry\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert 'pip install "asgi-ws-close[sentry]"' in done.stdout, done.stdout + done.stderr
