"""The OpenTelemetry integration, against the SDK's in-memory exporters.

The connection's span is opened by an ASGI wrapper outside the middleware, where
``OpenTelemetryMiddleware`` (opentelemetry-instrumentation-asgi, not installable here)
would open it: the hook runs in the connection's task, inside that span. Providers are
passed explicitly; the global ones (set-once) are never touched.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

# A clear skip, not a collection error, where the test dependency group is not installed.
pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-api and opentelemetry-sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from asgi_ws_close import WebSocketCloseMiddleware
from asgi_ws_close._types import ASGIApp, Message, Receive, Scope, Send
from asgi_ws_close.integrations import ELLIPSIS
from asgi_ws_close.integrations import otel as otel_module
from asgi_ws_close.integrations.otel import (
    ATTR_CLEAN,
    ATTR_CODE,
    ATTR_CODE_CLASS,
    ATTR_ERROR_TYPE,
    ATTR_HTTP_STATUS,
    ATTR_INITIATOR,
    ATTR_OUTCOME,
    ATTR_PROTOCOL_VERSION,
    ATTR_REASON,
    ATTR_RECEIVED_MESSAGES,
    ATTR_SENT_MESSAGES,
    ATTR_STATE,
    DEFAULT_DURATION_BUCKETS,
    METER_NAME,
    METRIC_ACTIVE_CONNECTIONS,
    METRIC_CLOSES,
    METRIC_DURATION,
    OpenTelemetryCloseInstrumentation,
)
from tests.support.asgi import drive, websocket_scope


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        found: list[Any] = []
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        assert scope_metrics.scope.name == METER_NAME
                        found += list(metric.data.data_points)
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def _with_span(app: ASGIApp, provider: TracerProvider) -> ASGIApp:
    # Where OpenTelemetryMiddleware sits: outermost, one span per connection.
    tracer = provider.get_tracer("tests")

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        with tracer.start_as_current_span(f"websocket {scope['path']}", kind=trace.SpanKind.SERVER):
            await app(scope, receive, send)

    return traced


async def _drive(app: ASGIApp, inbound: list[Message], *, http_version: str | None = None) -> list[Message]:
    # No http_version by default: the scope key is optional in ASGI.
    extra = {} if http_version is None else {"http_version": http_version}
    return await drive(app, inbound, websocket_scope(**extra))


def _endpoint(action: str) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if action == "reject":
            await send({"type": "websocket.close", "code": 4001})
            return
        await send({"type": "websocket.accept"})
        if action == "raise":
            raise KeyError("boom")
        if action == "close":
            await send({"type": "websocket.close", "code": 4003, "reason": "nope\n"})
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": message.get("text")})

    return app


def _instrumented(
    telemetry: Telemetry, action: str, **options: Any
) -> tuple[ASGIApp, OpenTelemetryCloseInstrumentation]:
    count_messages = options.pop("count_messages", False)
    server = options.pop("server", None)
    otel = OpenTelemetryCloseInstrumentation(meter_provider=telemetry.meter_provider, **options)
    app = otel.middleware(
        WebSocketCloseMiddleware(
            _endpoint(action), on_close=otel.on_close, count_messages=count_messages, server=server
        )
    )
    return _with_span(app, telemetry.tracer_provider), otel


CONNECT: Message = {"type": "websocket.connect"}


def _disconnect(code: int, reason: str | None = "") -> Message:
    # reason=None: no reason key at all, as in uvicorn's shutdown disconnect (1012).
    if reason is None:
        return {"type": "websocket.disconnect", "code": code}
    return {"type": "websocket.disconnect", "code": code, "reason": reason}


@pytest.mark.parametrize("count_messages", [False, True])
def test_client_close_sets_span_attributes_and_metrics(telemetry: Telemetry, count_messages: bool) -> None:
    app, _ = _instrumented(telemetry, "echo", keep_codes={4001}, count_messages=count_messages)
    hello: Message = {"type": "websocket.receive", "text": "hi"}
    asyncio.run(_drive(app, [CONNECT, hello, hello, _disconnect(4001, "bye\x1b[31m")]))
    [span] = telemetry.finished()
    # The message counts only when the middleware counts them.
    counts = {ATTR_RECEIVED_MESSAGES: 2, ATTR_SENT_MESSAGES: 2} if count_messages else {}
    assert dict(span.attributes or {}) == {
        ATTR_CODE: 4001,
        ATTR_REASON: "bye\\x1b[31m",
        ATTR_INITIATOR: "client",
        ATTR_CLEAN: True,
        ATTR_OUTCOME: "client_closed",
        ATTR_STATE: "closed",
        **counts,
    }
    [closes] = telemetry.points(METRIC_CLOSES)
    assert isinstance(closes, NumberDataPoint)
    assert closes.value == 1
    assert dict(closes.attributes or {}) == {
        ATTR_CODE_CLASS: "4001",
        ATTR_INITIATOR: "client",
        ATTR_CLEAN: True,
        ATTR_OUTCOME: "client_closed",
    }
    [duration] = telemetry.points(METRIC_DURATION)
    assert isinstance(duration, HistogramDataPoint)
    assert duration.count == 1
    assert tuple(duration.explicit_bounds) == DEFAULT_DURATION_BUCKETS
    assert dict(duration.attributes or {}) == {
        ATTR_INITIATOR: "client",
        ATTR_CLEAN: True,
        ATTR_OUTCOME: "client_closed",
    }
    [active] = telemetry.points(METRIC_ACTIVE_CONNECTIONS)
    assert active.value == 0


@pytest.mark.parametrize(
    ("action", "inbound", "span_attributes", "metric_attributes"),
    [
        (
            "close",
            [CONNECT, _disconnect(4003, "nope\n")],
            {
                ATTR_CODE: 4003,
                ATTR_REASON: "nope\\n",
                ATTR_INITIATOR: "app",
                ATTR_CLEAN: True,
                ATTR_OUTCOME: "app_closed",
                ATTR_STATE: "closed",
            },
            {ATTR_CODE_CLASS: "4xxx", ATTR_INITIATOR: "app", ATTR_CLEAN: True, ATTR_OUTCOME: "app_closed"},
        ),
        (
            "echo",
            [CONNECT, _disconnect(1006)],
            {ATTR_CODE: 1006, ATTR_REASON: "", ATTR_CLEAN: False, ATTR_OUTCOME: "dropped", ATTR_STATE: "closed"},
            {ATTR_CODE_CLASS: "1006", ATTR_CLEAN: False, ATTR_OUTCOME: "dropped"},
        ),
        (
            "echo",
            [CONNECT, _disconnect(1012, None)],
            {
                ATTR_CODE: 1012,
                ATTR_REASON: "",
                ATTR_INITIATOR: "server",
                ATTR_CLEAN: True,
                ATTR_OUTCOME: "server_shutdown",
                ATTR_STATE: "closed",
            },
            {ATTR_CODE_CLASS: "1012", ATTR_INITIATOR: "server", ATTR_CLEAN: True, ATTR_OUTCOME: "server_shutdown"},
        ),
        (
            "reject",
            [CONNECT],
            {
                ATTR_CODE: 1006,
                ATTR_REASON: "",
                ATTR_INITIATOR: "app",
                ATTR_CLEAN: False,
                ATTR_OUTCOME: "rejected",
                ATTR_STATE: "rejected",
                ATTR_HTTP_STATUS: 403,
            },
            {ATTR_CODE_CLASS: "1006", ATTR_INITIATOR: "app", ATTR_CLEAN: False, ATTR_OUTCOME: "rejected"},
        ),
    ],
    ids=["app-close", "transport-lost", "server-restart", "rejected"],
)
def test_scenarios(
    telemetry: Telemetry,
    action: str,
    inbound: list[Message],
    span_attributes: dict[str, Any],
    metric_attributes: dict[str, Any],
) -> None:
    app, _ = _instrumented(telemetry, action)
    asyncio.run(_drive(app, inbound))
    [span] = telemetry.finished()
    assert dict(span.attributes or {}) == span_attributes  # no message counts: not counted by default
    [closes] = telemetry.points(METRIC_CLOSES)
    assert dict(closes.attributes or {}) == metric_attributes


@pytest.mark.parametrize(
    ("action", "inbound", "outcome"),
    [
        ("echo", [CONNECT, _disconnect(1000)], "client_closed"),
        ("close", [CONNECT, _disconnect(4003, "nope\n")], "app_closed"),
        ("reject", [CONNECT], "rejected"),
        ("raise", [CONNECT], "app_error"),
        ("echo", [CONNECT, _disconnect(1006)], "dropped"),
        ("echo", [CONNECT, _disconnect(1012, None)], "server_shutdown"),
        ("echo", [CONNECT, _disconnect(1002, "invalid status code")], "server_error"),
    ],
    ids=["client_closed", "app_closed", "rejected", "app_error", "dropped", "server_shutdown", "server_error"],
)
def test_the_outcome_is_on_the_span_and_on_both_metrics(
    telemetry: Telemetry, action: str, inbound: list[Message], outcome: str
) -> None:
    app, _ = _instrumented(telemetry, action)
    if action == "raise":
        with pytest.raises(KeyError, match="boom"):
            asyncio.run(_drive(app, inbound))
    else:
        asyncio.run(_drive(app, inbound))
    [span] = telemetry.finished()
    assert (span.attributes or {})[ATTR_OUTCOME] == outcome
    [closes] = telemetry.points(METRIC_CLOSES)
    assert closes.value == 1
    assert (closes.attributes or {})[ATTR_OUTCOME] == outcome
    [duration] = telemetry.points(METRIC_DURATION)
    assert duration.count == 1
    assert (duration.attributes or {})[ATTR_OUTCOME] == outcome
    # The duration's attributes are the counter's, less the code class.
    assert {**(duration.attributes or {}), ATTR_CODE_CLASS: (closes.attributes or {})[ATTR_CODE_CLASS]} == dict(
        closes.attributes or {}
    )


def test_app_errors_have_the_app_error_outcome_everywhere(telemetry: Telemetry) -> None:
    app, _ = _instrumented(telemetry, "raise")
    with pytest.raises(KeyError, match="boom"):
        asyncio.run(_drive(app, [CONNECT], http_version="1.1"))
    [span] = telemetry.finished()
    assert dict(span.attributes or {}) == {
        ATTR_CODE: 1006,
        ATTR_REASON: "",
        ATTR_INITIATOR: "app",
        ATTR_CLEAN: False,
        ATTR_OUTCOME: "app_error",
        ATTR_STATE: "closed",
        ATTR_PROTOCOL_VERSION: "1.1",
        ATTR_ERROR_TYPE: "KeyError",
    }
    [closes] = telemetry.points(METRIC_CLOSES)
    assert dict(closes.attributes or {}) == {
        ATTR_CODE_CLASS: "1006",
        ATTR_INITIATOR: "app",
        ATTR_CLEAN: False,
        ATTR_OUTCOME: "app_error",
    }
    [duration] = telemetry.points(METRIC_DURATION)
    assert dict(duration.attributes or {}) == {ATTR_INITIATOR: "app", ATTR_CLEAN: False, ATTR_OUTCOME: "app_error"}


# granian reads an empty close frame and a drop alike: 1005 without a reason key.
_AMBIGUOUS = [CONNECT, {"type": "websocket.disconnect", "code": 1005}]


# One vocabulary: every attribute name, with its one type and where it may appear.
SPAN_ATTRIBUTES: dict[str, type] = {
    ATTR_CODE: int,
    ATTR_REASON: str,
    ATTR_INITIATOR: str,
    ATTR_CLEAN: bool,
    ATTR_OUTCOME: str,
    ATTR_STATE: str,
    ATTR_RECEIVED_MESSAGES: int,
    ATTR_SENT_MESSAGES: int,
    ATTR_PROTOCOL_VERSION: str,
    ATTR_HTTP_STATUS: int,
    ATTR_ERROR_TYPE: str,
}
METRIC_ATTRIBUTES: dict[str, dict[str, type]] = {
    METRIC_CLOSES: {ATTR_CODE_CLASS: str, ATTR_INITIATOR: str, ATTR_CLEAN: bool, ATTR_OUTCOME: str},
    METRIC_DURATION: {ATTR_INITIATOR: str, ATTR_CLEAN: bool, ATTR_OUTCOME: str},
    METRIC_ACTIVE_CONNECTIONS: {},
}

# A mix of endings: (action, inbound, options, http_version).
_ENDINGS: list[tuple[str, list[Message], dict[str, Any], str | None]] = [
    ("echo", [CONNECT, {"type": "websocket.receive", "text": "hi"}, _disconnect(4001, "bye")], {}, "1.1"),
    ("echo", [CONNECT, {"type": "websocket.receive", "text": "hi"}, _disconnect(4001, "b\x1b")], {"count": 1}, "2"),
    ("echo", [CONNECT, _disconnect(1000)], {"keep_codes": {4001}}, None),
    ("close", [CONNECT, _disconnect(4003, "nope\n")], {}, "1.1"),
    ("reject", [CONNECT], {}, "1.1"),
    ("reject", [CONNECT], {}, "2"),
    ("raise", [CONNECT], {}, "1.1"),
    ("echo", [CONNECT, _disconnect(1006)], {}, None),
    ("echo", [CONNECT, _disconnect(1012, None)], {}, "1.1"),
    ("echo", [CONNECT, _disconnect(1002, "invalid status code")], {}, "1.1"),
    ("echo", [CONNECT, _disconnect(3500, "x")], {}, "1.1"),
    ("echo", [CONNECT, _disconnect(999, "")], {}, "1.1"),
    ("echo", _AMBIGUOUS, {"server": "granian"}, "1.1"),
]


def _run_endings(telemetry: Telemetry) -> None:
    for action, inbound, options, http_version in _ENDINGS:
        options = dict(options)
        count = options.pop("count", 0)
        app, _ = _instrumented(telemetry, action, count_messages=bool(count), **options)
        if action == "raise":
            with pytest.raises(KeyError):
                asyncio.run(_drive(app, list(inbound), http_version=http_version))
        else:
            asyncio.run(_drive(app, list(inbound), http_version=http_version))


def test_each_attribute_name_has_one_type_on_every_span_and_metric_point(telemetry: Telemetry) -> None:
    _run_endings(telemetry)
    types: defaultdict[str, set[type]] = defaultdict(set)
    where: defaultdict[str, set[str]] = defaultdict(set)
    spans = telemetry.finished()
    assert len(spans) == len(_ENDINGS)
    for span in spans:
        for name, value in (span.attributes or {}).items():
            types[name].add(type(value))
            where[name].add("span")
    data = telemetry.reader.get_metrics_data()
    assert data is not None
    points = 0
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    points += 1
                    for name, value in (point.attributes or {}).items():
                        types[name].add(type(value))
                        where[name].add(metric.name)
                        assert name in METRIC_ATTRIBUTES[metric.name], (metric.name, name)
                        assert type(value) is METRIC_ATTRIBUTES[metric.name][name], (metric.name, name, value)
    assert points > len(METRIC_ATTRIBUTES)
    assert {name: kinds for name, kinds in types.items() if len(kinds) > 1} == {}
    # Every span attribute of the vocabulary showed up, with its documented type.
    assert {name for name, places in where.items() if "span" in places} == set(SPAN_ATTRIBUTES)
    for name, expected in SPAN_ATTRIBUTES.items():
        assert types[name] == {expected}, name
    # The exact code is a span attribute only; its bounded label, a metric attribute only.
    assert where[ATTR_CODE] == {"span"}
    assert where[ATTR_CODE_CLASS] == {METRIC_CLOSES}


def _vocabulary() -> dict[str, str]:
    return {
        name: getattr(otel_module, name)
        for name in otel_module.__all__
        if name.startswith(("ATTR_", "METRIC_")) or name == "METER_NAME"
    }


def test_the_constants_are_the_whole_vocabulary() -> None:
    attributes = {value for name, value in _vocabulary().items() if name.startswith("ATTR_")}
    assert attributes == set(SPAN_ATTRIBUTES) | {a for names in METRIC_ATTRIBUTES.values() for a in names}
    assert {value for name, value in _vocabulary().items() if name.startswith("METRIC_")} == set(METRIC_ATTRIBUTES)


# OpenTelemetry's naming rules: lowercase ASCII, dot-separated namespaces, snake_case words.
_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")


@pytest.mark.parametrize("name", sorted(set(_vocabulary().values()) - {METER_NAME}))
def test_names_follow_the_naming_rules(name: str) -> None:
    assert _NAME.fullmatch(name), name
    assert "__" not in name and not name.endswith("_")


def test_no_name_is_also_a_namespace() -> None:
    # "Names SHOULD NOT coincide with namespaces": no attribute or metric name is a prefix,
    # up to a dot, of another (websocket.close.code and websocket.close.code.class could
    # not both exist; websocket.close.code_class can).
    names = set(_vocabulary().values()) - {METER_NAME}
    clashes = sorted((a, b) for a in names for b in names if b.startswith(a + "."))
    assert clashes == []


def test_the_docs_tables_list_every_attribute_and_metric_and_nothing_else() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "observability.md").read_text(encoding="utf-8")
    section = page.split("\n## OpenTelemetry\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    listed = {name for row in rows for name in re.findall(r"`([a-z_.]+)`", row.split("|")[1])}
    vocabulary = set(_vocabulary().values()) - {METER_NAME}
    assert listed == vocabulary, (sorted(vocabulary - listed), sorted(listed - vocabulary))


_TYPE_NAMES = {"int": int, "str": str, "bool": bool}


def test_the_readme_table_lists_every_attribute_with_its_type_and_where_it_goes() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Observability\n", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, tuple[type, str]] = {}
    for row in (line for line in section.splitlines() if line.startswith("| `")):
        names, on = (cell.strip() for cell in row.strip("|").split("|"))
        # "`a` (int)", or "`a` and `b` (int)": each name with the type that follows it.
        for group, kind in re.findall(r"((?:`[a-z_.]+`(?: and )?)+) \((int|str|bool)", names):
            for name in re.findall(r"`([a-z_.]+)`", group):
                listed[name] = (_TYPE_NAMES[kind], on)
    on_metrics = {name for names in METRIC_ATTRIBUTES.values() for name in names}
    expected = {
        name: (
            kind,
            {(True, True): "spans and metrics", (True, False): "spans", (False, True): "metrics"}[
                (name in SPAN_ATTRIBUTES, name in on_metrics)
            ],
        )
        for name, kind in {
            **SPAN_ATTRIBUTES,
            **{n: t for names in METRIC_ATTRIBUTES.values() for n, t in names.items()},
        }.items()
    }
    assert listed == expected


@pytest.mark.parametrize("http_version", ["1.1", "2", None])
def test_the_http_version_is_on_the_span_only(telemetry: Telemetry, http_version: str | None) -> None:
    app, _ = _instrumented(telemetry, "echo")
    asyncio.run(_drive(app, [CONNECT, _disconnect(1000)], http_version=http_version))
    [span] = telemetry.finished()
    version = {} if http_version is None else {ATTR_PROTOCOL_VERSION: http_version}
    assert dict(span.attributes or {}) == {
        ATTR_CODE: 1000,
        ATTR_REASON: "",
        ATTR_INITIATOR: "client",
        ATTR_CLEAN: True,
        ATTR_OUTCOME: "client_closed",
        ATTR_STATE: "closed",
        **version,
    }
    # Not a metric attribute: the version adds nothing to count closes by.
    [closes] = telemetry.points(METRIC_CLOSES)
    assert ATTR_PROTOCOL_VERSION not in (closes.attributes or {})
    [duration] = telemetry.points(METRIC_DURATION)
    assert ATTR_PROTOCOL_VERSION not in (duration.attributes or {})


def test_a_rejected_http2_handshake_has_the_version_too(telemetry: Telemetry) -> None:
    app, _ = _instrumented(telemetry, "reject")
    asyncio.run(_drive(app, [CONNECT], http_version="2"))
    [span] = telemetry.finished()
    attributes = dict(span.attributes or {})
    assert (attributes[ATTR_OUTCOME], attributes[ATTR_PROTOCOL_VERSION], attributes[ATTR_STATE]) == (
        "rejected",
        "2",
        "rejected",
    )


def test_an_outcome_the_server_cannot_tell_is_left_out_of_the_metrics(telemetry: Telemetry) -> None:
    # No span: only the metrics, whose attributes leave out what is unknown.
    otel = OpenTelemetryCloseInstrumentation(meter_provider=telemetry.meter_provider)
    seen: list[Any] = []
    app = WebSocketCloseMiddleware(
        _endpoint("echo"), on_close=[otel.on_close, lambda context, scope: seen.append(context)], server="granian"
    )
    asyncio.run(_drive(app, _AMBIGUOUS))
    [context] = seen
    assert context.outcome is None and "outcome" in context.unknown
    [closes] = telemetry.points(METRIC_CLOSES)
    assert dict(closes.attributes or {}) == {ATTR_CODE_CLASS: "none", ATTR_CLEAN: False}
    [duration] = telemetry.points(METRIC_DURATION)
    assert dict(duration.attributes or {}) == {ATTR_CLEAN: False}


def test_an_outcome_the_server_cannot_tell_is_left_out_of_the_span(
    telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = _instrumented(telemetry, "echo", server="granian")
    with caplog.at_level("ERROR", logger="asgi_ws_close"):
        asyncio.run(_drive(app, _AMBIGUOUS, http_version="1.1"))
    assert caplog.records == []  # the hook did not raise
    [span] = telemetry.finished()
    attributes = dict(span.attributes or {})
    assert ATTR_OUTCOME not in attributes and ATTR_INITIATOR not in attributes
    assert ATTR_CODE not in attributes  # unknown: not guessed
    assert attributes[ATTR_PROTOCOL_VERSION] == "1.1"
    [closes] = telemetry.points(METRIC_CLOSES)
    assert dict(closes.attributes or {}) == {ATTR_CODE_CLASS: "none", ATTR_CLEAN: False}


def test_app_errors_set_error_type_and_still_propagate(telemetry: Telemetry) -> None:
    app, _ = _instrumented(telemetry, "raise")
    with pytest.raises(KeyError, match="boom"):
        asyncio.run(_drive(app, [CONNECT]))
    [span] = telemetry.finished()
    attributes = dict(span.attributes or {})
    assert attributes[ATTR_ERROR_TYPE] == "KeyError"
    assert (attributes[ATTR_CODE], attributes[ATTR_INITIATOR], attributes[ATTR_CLEAN]) == (1006, "app", False)
    # The span's own instrumentation records the exception itself; we add no event.
    assert [event.name for event in span.events] == ["exception"]
    [active] = telemetry.points(METRIC_ACTIVE_CONNECTIONS)
    assert active.value == 0


def test_reasons_are_sanitised_and_capped_or_left_out(telemetry: Telemetry) -> None:
    app, _ = _instrumented(telemetry, "echo", max_length=8)
    asyncio.run(_drive(app, [CONNECT, _disconnect(4001, "a\nlong reason")]))
    app, _ = _instrumented(telemetry, "echo", record_reason=False)
    asyncio.run(_drive(app, [CONNECT, _disconnect(4001, "personal data")]))
    capped, left_out = telemetry.finished()
    assert (capped.attributes or {})[ATTR_REASON] == "a\\nlong" + ELLIPSIS
    assert ATTR_REASON not in (left_out.attributes or {})


def test_private_codes_collapse_in_metrics_but_not_on_spans(telemetry: Telemetry) -> None:
    app, _ = _instrumented(telemetry, "echo")
    for code in range(3000, 3100):
        asyncio.run(_drive(app, [CONNECT, _disconnect(code, f"reason {code}")]))
    codes = {(span.attributes or {})[ATTR_CODE] for span in telemetry.finished()}
    assert codes == set(range(3000, 3100))
    [closes] = telemetry.points(METRIC_CLOSES)
    assert closes.value == 100
    assert dict(closes.attributes or {}) == {
        ATTR_CODE_CLASS: "3xxx",
        ATTR_INITIATOR: "client",
        ATTR_CLEAN: True,
        ATTR_OUTCOME: "client_closed",
    }


def test_without_an_active_span_only_metrics_are_recorded(telemetry: Telemetry) -> None:
    otel = OpenTelemetryCloseInstrumentation(meter_provider=telemetry.meter_provider)
    app = WebSocketCloseMiddleware(_endpoint("echo"), on_close=otel.on_close)
    assert not trace.get_current_span().is_recording()
    asyncio.run(_drive(app, [CONNECT, _disconnect(1000)]))
    assert telemetry.finished() == []
    [closes] = telemetry.points(METRIC_CLOSES)
    assert closes.value == 1


def test_a_span_that_is_not_recording_is_left_alone(telemetry: Telemetry) -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    seen: list[bool] = []
    otel = OpenTelemetryCloseInstrumentation(meter_provider=telemetry.meter_provider)

    def spy(context: Any, scope: Scope) -> None:
        seen.append(trace.get_current_span().is_recording())

    app = _with_span(WebSocketCloseMiddleware(_endpoint("echo"), on_close=[spy, otel.on_close]), provider)
    asyncio.run(_drive(app, [CONNECT, _disconnect(1000)]))
    assert seen == [False]
    [closes] = telemetry.points(METRIC_CLOSES)
    assert closes.value == 1


def test_the_active_connections_counter_follows_each_websocket(telemetry: Telemetry) -> None:
    otel = OpenTelemetryCloseInstrumentation(meter_provider=telemetry.meter_provider)
    inside: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        [point] = telemetry.points(METRIC_ACTIVE_CONNECTIONS)
        inside.append(point.value)

    async def other(scope: Scope, receive: Receive, send: Send) -> None:
        pass

    async def main() -> None:
        await otel.middleware(app)({"type": "websocket"}, _no_receive, _no_send)
        await otel.middleware(other)({"type": "http"}, _no_receive, _no_send)

    asyncio.run(main())
    assert inside == [1]
    [point] = telemetry.points(METRIC_ACTIVE_CONNECTIONS)
    assert point.value == 0


async def _no_receive() -> Message:
    raise AssertionError("not called")


async def _no_send(message: Message) -> None:
    raise AssertionError("not called")


def test_a_live_connection_records_nothing(telemetry: Telemetry) -> None:
    from asgi_ws_close import CloseContext
    from asgi_ws_close._tracker import CloseTracker

    otel = OpenTelemetryCloseInstrumentation(meter_provider=telemetry.meter_provider)
    otel.on_close(CloseContext._of(CloseTracker()), {})
    assert telemetry.points(METRIC_CLOSES) == []


def test_the_global_providers_by_default() -> None:
    # No SDK configured globally: the API's proxies take the records and drop them.
    otel = OpenTelemetryCloseInstrumentation()
    app = otel.middleware(WebSocketCloseMiddleware(_endpoint("echo"), on_close=otel.on_close))
    asyncio.run(_drive(app, [CONNECT, _disconnect(1000)]))


def test_max_length_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        OpenTelemetryCloseInstrumentation(max_length=0)


def test_a_clear_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # what a missing package looks like
    monkeypatch.delitem(sys.modules, "asgi_ws_close.integrations.otel")
    with pytest.raises(ImportError, match=r'pip install "asgi-ws-close\[otel\]"'):
        importlib.import_module("asgi_ws_close.integrations.otel")
