"""Ready-made `on_close` hooks for logging, Prometheus, OpenTelemetry and Sentry.

Each integration lives in its own module, so that importing one never imports another's
third-party library:

* `asgi_ws_close.integrations.logging`: `LogCloseHook` and the ready hook `log_close`, one
  structured line per close on the `asgi_ws_close` logger (standard library only).
* `asgi_ws_close.integrations.prometheus`: `PrometheusCloseMetrics`, a counter of closes, a
  histogram of durations and a gauge of active connections, right under several worker
  processes too (`pip install "asgi-ws-close[prometheus]"`).
* `asgi_ws_close.integrations.otel`: `OpenTelemetryCloseInstrumentation`, close attributes on
  the connection's span and close metrics through the OpenTelemetry API
  (`pip install "asgi-ws-close[otel]"`).
* `asgi_ws_close.integrations.sentry`: `SentryCloseHook` and the ready hook `sentry_close`,
  how the connection ended on its Sentry scope (`pip install "asgi-ws-close[sentry]"`).

All of them run after the connection ended, never on the message path, and pass every
peer-controlled value through `sanitize_reason` (logs, span attributes, Sentry) or
`code_label` (metric labels), re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable

from .._sanitize import CODE_LABELS, ELLIPSIS, MAX_REASON_LENGTH, code_label, sanitize_reason
from .._types import ASGIApp, Receive, Scope, Send, WebSocketObserver

__all__ = ["CODE_LABELS", "DEFAULT_DURATION_BUCKETS", "ELLIPSIS", "MAX_REASON_LENGTH", "code_label", "sanitize_reason"]

#: Connection durations, in seconds: WebSockets live from milliseconds (a rejected or
#: failed handshake) to a day (a dashboard left open), so the buckets span both.
DEFAULT_DURATION_BUCKETS: tuple[float, ...] = (
    0.01,
    0.1,
    1.0,
    5.0,
    15.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    4 * 3600.0,
    12 * 3600.0,
    24 * 3600.0,
)


class _ConnectionsMiddleware:
    """The factory behind `metrics.middleware` and `otel.middleware`: `factory(app)` wraps
    `app` in `_ConnectionsInProgress`.

    An instance rather than a bound method: Sentry's Starlette integration sets `__call__` on
    whatever `Middleware(...)` is given (`app.add_middleware(metrics.middleware)` builds one),
    which a bound method refuses with `AttributeError`. On an instance the attribute is inert.
    """

    def __init__(self, add: Callable[[int], object]) -> None:
        self._add = add

    def __call__(self, app: ASGIApp) -> ASGIApp:
        return _ConnectionsInProgress(app, self._add)


class _ConnectionsInProgress(WebSocketObserver):
    """Wrap an app so that `add(1)` and `add(-1)` bracket each WebSocket connection.

    `add(-1)` runs however the app's call ends: returned, raised or cancelled. Other scopes
    pass straight through, and nothing is on the message path: receive and send reach the app
    untouched. The active-connections gauge of the Prometheus and OpenTelemetry integrations.
    """

    def __init__(self, app: ASGIApp, add: Callable[[int], object]) -> None:
        super().__init__(app)
        self._add = add

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._add(1)
        try:
            await self.app(scope, receive, send)
        finally:
            self._add(-1)
