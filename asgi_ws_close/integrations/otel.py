"""OpenTelemetry: close attributes on the connection's span, close metrics through the API.

Install with `pip install "asgi-ws-close[otel]"` (the OpenTelemetry API only; the SDK and
exporters are the application's choice), then:

```python
from asgi_ws_close import WebSocketCloseMiddleware
from asgi_ws_close.integrations.otel import OpenTelemetryCloseInstrumentation

otel = OpenTelemetryCloseInstrumentation()
app = otel.middleware(WebSocketCloseMiddleware(app, on_close=otel.on_close))
app = OpenTelemetryMiddleware(app)  # opentelemetry-instrumentation-asgi, outermost
```

The hook runs in the connection's task, after the app returned, inside the span that an
outer instrumentation (`OpenTelemetryMiddleware`) opened for the connection. One
vocabulary serves spans and metrics, and each attribute name has one type wherever it
appears (docs/observability.md's table lists them all). No semantic convention exists for WebSocket
closes yet: the names follow OpenTelemetry's naming rules (lowercase, dot-separated
namespaces, snake_case words, no name that is also a namespace) and the nearest existing
conventions: Datadog's `websocket.close.code` and `websocket.close.reason`, and the
general conventions' `network.protocol.version`, `http.response.status_code` and
`error.type`.

If the connection's span is recording, it gets:

* `websocket.close.code` (int): the close code (1006 when no close frame was exchanged);
  not set when the server could not report it.
* `websocket.close.reason` (string): the close reason, sanitised (escaped and capped).
* `websocket.close.initiator` (string): `client`, `app` or `server`; not set when
  the transport was lost and nobody closed.
* `websocket.close.clean` (boolean): whether it closed cleanly (`CloseEvent.wasClean`).
* `websocket.close.outcome` (string): how it ended, in one word (`client_closed`,
  `app_closed`, `rejected`, `app_error`, `dropped`, `server_timeout`,
  `server_shutdown`, `server_error`); not set where the server cannot tell.
* `network.protocol.version` (string): the HTTP version of the upgrade (`1.1`, `2`).
* `websocket.connection.state` (string): `closed`, or `rejected` for a refused handshake.
* `websocket.received.message_count`, `websocket.sent.message_count` (int): the
  messages the app received and sent; only with `WebSocketCloseMiddleware(count_messages=True)`.
* `http.response.status_code` (int): the HTTP status of a rejected handshake.
* `error.type` (string): the type of the exception that escaped the app.

The metrics, on the meter `asgi_ws_close`:

* `websocket.server.closes` (counter, `{close}`): ended connections, rejected
  handshakes included, with `websocket.close.initiator`, `websocket.close.code_class`,
  `websocket.close.clean` and `websocket.close.outcome`. `websocket.close.code_class`
  (string) is the bounded label of `code_label()` (`"1000"`, `"4xxx"`, `"other"`,
  `"none"`...), so that peers cannot create time series at will; spans carry the exact
  code as the int `websocket.close.code`.
* `websocket.server.connection.duration` (histogram, `s`): from the handshake request to
  the end, with `websocket.close.initiator`, `websocket.close.clean` and
  `websocket.close.outcome`.
* `websocket.server.active_connections` (up-down counter, `{connection}`): connections
  being served, handshakes included; fed by `OpenTelemetryCloseInstrumentation.middleware`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from .. import __version__
from .._record import CloseContext
from .._sanitize import MAX_REASON_LENGTH, code_label, sanitize_reason
from .._tracker import ConnectionState
from .._types import ASGIApp, Scope
from . import DEFAULT_DURATION_BUCKETS, _ConnectionsMiddleware

try:
    from opentelemetry import metrics, trace
    from opentelemetry.util.types import AttributeValue
except ImportError as exc:
    raise ImportError(
        'asgi_ws_close.integrations.otel needs opentelemetry-api: pip install "asgi-ws-close[otel]"'
    ) from exc

__all__ = [
    "ATTR_CLEAN",
    "ATTR_CODE",
    "ATTR_CODE_CLASS",
    "ATTR_ERROR_TYPE",
    "ATTR_HTTP_STATUS",
    "ATTR_INITIATOR",
    "ATTR_OUTCOME",
    "ATTR_PROTOCOL_VERSION",
    "ATTR_REASON",
    "ATTR_RECEIVED_MESSAGES",
    "ATTR_SENT_MESSAGES",
    "ATTR_STATE",
    "DEFAULT_DURATION_BUCKETS",
    "METER_NAME",
    "METRIC_ACTIVE_CONNECTIONS",
    "METRIC_CLOSES",
    "METRIC_DURATION",
    "OpenTelemetryCloseInstrumentation",
]

#: The instrumentation scope of the metrics.
METER_NAME = "asgi_ws_close"

# Each name has one type wherever it appears (span or metric), and none is also the
# namespace of another (OpenTelemetry's naming rules): hence `code_class`, not `code.class`.
#: int, spans only: the exact close code.
ATTR_CODE = "websocket.close.code"
#: string, metrics only: the close code's bounded label, `code_label()`.
ATTR_CODE_CLASS = "websocket.close.code_class"
#: string, spans only: the sanitised close reason.
ATTR_REASON = "websocket.close.reason"
#: string, spans and metrics.
ATTR_INITIATOR = "websocket.close.initiator"
#: boolean, spans and metrics.
ATTR_CLEAN = "websocket.close.clean"
#: string, spans and metrics.
ATTR_OUTCOME = "websocket.close.outcome"
#: string, spans only.
ATTR_STATE = "websocket.connection.state"
#: int, spans only (`count_messages=True`).
ATTR_RECEIVED_MESSAGES = "websocket.received.message_count"
#: int, spans only (`count_messages=True`).
ATTR_SENT_MESSAGES = "websocket.sent.message_count"
# Attributes of the general semantic conventions, spans only.
#: int: the HTTP status of a rejected handshake.
ATTR_HTTP_STATUS = "http.response.status_code"
#: string: the type of the exception that escaped the app.
ATTR_ERROR_TYPE = "error.type"
#: string: the HTTP version of the upgrade.
ATTR_PROTOCOL_VERSION = "network.protocol.version"

METRIC_CLOSES = "websocket.server.closes"
METRIC_DURATION = "websocket.server.connection.duration"
METRIC_ACTIVE_CONNECTIONS = "websocket.server.active_connections"


class OpenTelemetryCloseInstrumentation:
    """The close attributes and metrics of OpenTelemetry, as a hook and a middleware.

    Pass `on_close` to `WebSocketCloseMiddleware`, and wrap the
    app with `middleware` for the active-connections counter. The instruments are
    created once, here, on the meter of `meter_provider` (the global one by default:
    until the application sets one, the API's proxies record nothing and cost little).

    Args:
        meter_provider: The `MeterProvider`; `None` for the
            global one.
        keep_codes: Close codes that get a `websocket.close.code_class` value of their
            own even outside the registry (the app's own 4000-4999 codes). A fixed
            set: each may become a time series.
        record_reason: Whether spans get `websocket.close.reason`. It is what the peer
            wrote (sanitised): turn it off if reasons may carry personal data.
        max_length: The cap on the sanitised reason, in characters.
        duration_buckets: The bucket boundaries advised for the duration histogram.
    """

    def __init__(
        self,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        keep_codes: Collection[int] = (),
        record_reason: bool = True,
        max_length: int = MAX_REASON_LENGTH,
        duration_buckets: Sequence[float] = DEFAULT_DURATION_BUCKETS,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, not {max_length}")
        self.keep_codes = frozenset(int(code) for code in keep_codes)
        self.record_reason = record_reason
        self.max_length = max_length
        meter = metrics.get_meter(METER_NAME, __version__, meter_provider)
        self.closes = meter.create_counter(
            METRIC_CLOSES,
            unit="{close}",
            description="WebSocket connections that ended, by initiator, close code class, cleanliness and outcome.",
        )
        self.connection_duration = meter.create_histogram(
            METRIC_DURATION,
            unit="s",
            description="Time from the WebSocket handshake request to the end of the connection.",
            explicit_bucket_boundaries_advisory=duration_buckets,
        )
        self.active_connections = meter.create_up_down_counter(
            METRIC_ACTIVE_CONNECTIONS,
            unit="{connection}",
            description="WebSocket connections being served, handshakes included.",
        )

    def on_close(self, context: CloseContext, scope: Scope) -> None:
        """The `on_close` hook: annotate the current span, record the metrics.

        Called for a connection that has not ended (by hand), it does nothing.
        """
        if context.state < ConnectionState.CLOSED:
            return
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(self._span_attributes(context))
        attributes: dict[str, AttributeValue] = {ATTR_CLEAN: bool(context.clean)}
        if context.initiator is not None:
            attributes[ATTR_INITIATOR] = context.initiator
        if context.outcome is not None:
            attributes[ATTR_OUTCOME] = context.outcome
        duration = context.duration
        assert duration is not None  # ended connections always have one
        self.connection_duration.record(duration, attributes)
        self.closes.add(1, {**attributes, ATTR_CODE_CLASS: code_label(context.code, self.keep_codes)})

    def _span_attributes(self, context: CloseContext) -> dict[str, AttributeValue]:
        """Return the span attributes of an ended connection (see the module's table)."""
        attributes: dict[str, AttributeValue] = {
            ATTR_CLEAN: bool(context.clean),
            ATTR_STATE: context.state.name.lower(),
        }
        code = context.code
        if code is not None:  # None when the server could not report it (context.unknown)
            attributes[ATTR_CODE] = int(code)
        if context.messages_received is not None and context.messages_sent is not None:
            # Only counted with WebSocketCloseMiddleware(count_messages=True).
            attributes[ATTR_RECEIVED_MESSAGES] = context.messages_received
            attributes[ATTR_SENT_MESSAGES] = context.messages_sent
        if self.record_reason:
            attributes[ATTR_REASON] = sanitize_reason(context.reason, self.max_length)
        if context.initiator is not None:
            attributes[ATTR_INITIATOR] = context.initiator
        if context.outcome is not None:
            attributes[ATTR_OUTCOME] = context.outcome
        if context.http_version is not None:
            attributes[ATTR_PROTOCOL_VERSION] = context.http_version
        if context.http_status is not None:
            attributes[ATTR_HTTP_STATUS] = context.http_status
        error = context.error
        if error is not None:
            # As OpenTelemetry's own Python instrumentations set it.
            attributes[ATTR_ERROR_TYPE] = type(error).__qualname__
        return attributes

    @property
    def middleware(self) -> Callable[[ASGIApp], ASGIApp]:
        """A middleware factory: `otel.middleware(app)` wraps `app` so that the
        active-connections counter follows each WebSocket.

        It goes up when a `websocket` scope arrives and down when the app's call returns,
        raises or is cancelled; other scopes pass straight through. Works as a Starlette
        middleware factory too, Sentry's Starlette integration or not:
        `app.add_middleware(otel.middleware)`.
        """
        return _ConnectionsMiddleware(self.active_connections.add)
