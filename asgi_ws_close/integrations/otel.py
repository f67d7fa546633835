"""OpenTelemetry: close attributes on the connection's span, close metrics through the API.

Install with ``pip install "asgi-ws-close[otel]"`` (the OpenTelemetry API only; the SDK and
exporters are the application's choice), then::

    from asgi_ws_close import WebSocketCloseMiddleware
    from asgi_ws_close.integrations.otel import OpenTelemetryCloseInstrumentation

    otel = OpenTelemetryCloseInstrumentation()
    app = otel.middleware(WebSocketCloseMiddleware(app, on_close=otel.on_close))
    app = OpenTelemetryMiddleware(app)  # opentelemetry-instrumentation-asgi, outermost

The hook runs in the connection's task, after the app returned, inside the span that an
outer instrumentation (``OpenTelemetryMiddleware``) opened for the connection: if that span
is recording, it gets these attributes, in the style of OpenTelemetry's semantic
conventions (no convention for WebSocket closes exists yet):

* ``websocket.close.code`` (int): the close code (1006 when no close frame was exchanged);
  not set when the server could not report it.
* ``websocket.close.reason`` (string): the close reason, sanitised (escaped and capped).
* ``websocket.close.initiator`` (string): ``client``, ``app`` or ``server``; not set when
  the transport was lost and nobody closed.
* ``websocket.close.clean`` (boolean): whether it closed cleanly (``CloseEvent.wasClean``).
* ``websocket.close.outcome`` (string): how it ended, in one word (``client_closed``,
  ``app_closed``, ``rejected``, ``app_error``, ``dropped``, ``server_timeout``,
  ``server_shutdown``, ``server_error``); not set where the server cannot tell.
* ``network.protocol.version`` (string): the HTTP version of the upgrade (``1.1``, ``2``).
* ``websocket.connection.state`` (string): ``closed``, or ``rejected`` for a refused handshake.
* ``websocket.received.message_count``, ``websocket.sent.message_count`` (int): the
  messages the app received and sent; only with ``WebSocketCloseMiddleware(count_messages=True)``.
* ``http.response.status_code`` (int): the HTTP status of a rejected handshake.
* ``error.type`` (string): the type of the exception that escaped the app.

The metrics, on the meter ``asgi_ws_close``:

* ``websocket.server.closes`` (counter, ``{close}``): ended connections, rejected
  handshakes included, with ``websocket.close.initiator``, ``websocket.close.code``,
  ``websocket.close.clean`` and ``websocket.close.outcome``. Here the code is a *string* from
  :func:`~asgi_ws_close.integrations.code_label` (``"1000"``, ``"4xxx"``...), so that peers
  cannot create time series at will; spans carry the exact code.
* ``websocket.server.connection.duration`` (histogram, ``s``): from the handshake request to
  the end, with ``websocket.close.initiator``, ``websocket.close.clean`` and
  ``websocket.close.outcome``.
* ``websocket.server.active_connections`` (up-down counter, ``{connection}``): connections
  being served, handshakes included; fed by :meth:`OpenTelemetryCloseInstrumentation.middleware`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from .. import __version__
from .._record import CloseContext
from .._sanitize import MAX_REASON_LENGTH, code_label, sanitize_reason
from .._tracker import ConnectionState
from .._types import ASGIApp, Scope
from . import DEFAULT_DURATION_BUCKETS, _ConnectionsInProgress

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
    "ATTR_INITIATOR",
    "ATTR_OUTCOME",
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

ATTR_CODE = "websocket.close.code"
ATTR_REASON = "websocket.close.reason"
ATTR_INITIATOR = "websocket.close.initiator"
ATTR_CLEAN = "websocket.close.clean"
ATTR_OUTCOME = "websocket.close.outcome"
ATTR_STATE = "websocket.connection.state"
ATTR_RECEIVED_MESSAGES = "websocket.received.message_count"
ATTR_SENT_MESSAGES = "websocket.sent.message_count"
# Attributes of the general semantic conventions.
_ATTR_HTTP_STATUS = "http.response.status_code"
_ATTR_ERROR_TYPE = "error.type"
_ATTR_PROTOCOL_VERSION = "network.protocol.version"

METRIC_CLOSES = "websocket.server.closes"
METRIC_DURATION = "websocket.server.connection.duration"
METRIC_ACTIVE_CONNECTIONS = "websocket.server.active_connections"


class OpenTelemetryCloseInstrumentation:
    """The close attributes and metrics of OpenTelemetry, as a hook and a middleware.

    Pass :meth:`on_close` to :class:`~asgi_ws_close.WebSocketCloseMiddleware`, and wrap the
    app with :meth:`middleware` for the active-connections counter. The instruments are
    created once, here, on the meter of ``meter_provider`` (the global one by default:
    until the application sets one, the API's proxies record nothing and cost little).

    Args:
        meter_provider: The :class:`~opentelemetry.metrics.MeterProvider`; ``None`` for the
            global one.
        keep_codes: Close codes that get a ``websocket.close.code`` metric attribute of
            their own even outside the registry (the app's own 4000-4999 codes). A fixed
            set: each may become a time series.
        record_reason: Whether spans get ``websocket.close.reason``. It is what the peer
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
            description="WebSocket connections that ended, by initiator, close code, cleanliness and outcome.",
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
        """The ``on_close`` hook: annotate the current span, record the metrics.

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
        self.closes.add(1, {**attributes, ATTR_CODE: code_label(context.code, self.keep_codes)})

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
            attributes[_ATTR_PROTOCOL_VERSION] = context.http_version
        if context.http_status is not None:
            attributes[_ATTR_HTTP_STATUS] = context.http_status
        error = context.error
        if error is not None:
            # As OpenTelemetry's own Python instrumentations set it.
            attributes[_ATTR_ERROR_TYPE] = type(error).__qualname__
        return attributes

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap ``app`` so that the active-connections counter follows each WebSocket.

        It goes up when a ``websocket`` scope arrives and down when the app's call returns,
        raises or is cancelled; other scopes pass straight through. Works as a Starlette
        middleware factory too: ``app.add_middleware(otel.middleware)``.
        """
        return _ConnectionsInProgress(app, self.active_connections.add)
