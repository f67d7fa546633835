"""Prometheus metrics of WebSocket closes, with prometheus-client.

Install with ``pip install "asgi-ws-close[prometheus]"``, then::

    from prometheus_client import make_asgi_app
    from asgi_ws_close import WebSocketCloseMiddleware
    from asgi_ws_close.integrations.prometheus import PrometheusCloseMetrics

    metrics = PrometheusCloseMetrics()  # once per process: it registers its metrics
    app = metrics.middleware(WebSocketCloseMiddleware(app, on_close=metrics.on_close))
    # and serve make_asgi_app() at /metrics

The metrics (with the default ``namespace="websocket"``, ``subsystem="server"``):

* ``websocket_server_closes_total{initiator, code, clean, outcome}``: counter, one per ended
  connection, rejected handshakes included. ``outcome`` is the context's
  :attr:`~asgi_ws_close.CloseContext.outcome` (``client_closed``, ``app_closed``,
  ``rejected``, ``app_error``, ``dropped``, ``server_timeout``, ``server_shutdown``,
  ``server_error``, or ``unknown`` where the server cannot tell); ``initiator`` is ``client``,
  ``app``, ``server`` or ``none`` (the transport was lost); ``code`` is a bounded label from
  :func:`~asgi_ws_close.integrations.code_label` (registered codes as themselves, others as
  ``1xxx``-``4xxx`` or ``other``); ``clean`` is ``true`` or ``false``. Reasons are never labels.
* ``websocket_server_connection_duration_seconds{initiator, clean, outcome}``: histogram of the time
  from the handshake request to the end, in seconds (:data:`DEFAULT_DURATION_BUCKETS`).
* ``websocket_server_active_connections``: gauge of the WebSocket connections being served,
  from the handshake request until the app's task ends. The ``on_close`` hook only runs at
  the end, so this one needs :meth:`PrometheusCloseMetrics.middleware` around the app; it
  costs nothing per message.

Multiprocess mode (gunicorn or ``uvicorn --workers N`` with ``PROMETHEUS_MULTIPROC_DIR``)
works as prometheus-client documents it: the counter and the histogram add up across
workers, and the gauge is ``multiprocess_mode="livesum"``, the sum over live workers.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

from .._record import CloseContext
from .._sanitize import code_label
from .._tracker import ConnectionState
from .._types import ASGIApp, Scope
from . import DEFAULT_DURATION_BUCKETS, _ConnectionsInProgress

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:
    raise ImportError(
        'asgi_ws_close.integrations.prometheus needs prometheus-client: pip install "asgi-ws-close[prometheus]"'
    ) from exc

__all__ = ["DEFAULT_DURATION_BUCKETS", "PrometheusCloseMetrics"]


class PrometheusCloseMetrics:
    """The close metrics of a process, with the hook and the middleware that feed them.

    Create it once per process (a second instance on the same registry would register the
    same names twice, which prometheus-client refuses with :exc:`ValueError`), then pass
    :meth:`on_close` to :class:`~asgi_ws_close.WebSocketCloseMiddleware` and wrap the app
    with :meth:`middleware` for the active-connections gauge.

    Args:
        registry: Where to register the metrics: prometheus-client's default ``REGISTRY``,
            another :class:`~prometheus_client.CollectorRegistry`, or ``None`` for none.
        namespace: The first part of the metric names.
        subsystem: The second part of the metric names.
        keep_codes: Close codes that get a ``code`` label of their own even outside the
            registry, typically the app's own 4000-4999 codes (``{4001, 4003}``). A fixed
            set: each may become a time series.
        duration_buckets: The upper bounds of the duration histogram, in seconds.

    Attributes:
        closes: The ``closes_total`` :class:`~prometheus_client.Counter`.
        connection_duration: The ``connection_duration_seconds``
            :class:`~prometheus_client.Histogram`.
        active_connections: The ``active_connections`` :class:`~prometheus_client.Gauge`.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "websocket",
        subsystem: str = "server",
        keep_codes: Collection[int] = (),
        duration_buckets: Sequence[float] = DEFAULT_DURATION_BUCKETS,
    ) -> None:
        self.keep_codes = frozenset(int(code) for code in keep_codes)
        self.closes = Counter(
            "closes",
            "WebSocket connections that ended, by who initiated the end, close code, cleanliness and outcome.",
            ("initiator", "code", "clean", "outcome"),
            namespace=namespace,
            subsystem=subsystem,
            registry=registry,
        )
        self.connection_duration = Histogram(
            "connection_duration_seconds",
            "Time from the WebSocket handshake request to the end of the connection.",
            ("initiator", "clean", "outcome"),
            namespace=namespace,
            subsystem=subsystem,
            registry=registry,
            buckets=duration_buckets,
        )
        self.active_connections = Gauge(
            "active_connections",
            "WebSocket connections being served, handshakes included.",
            namespace=namespace,
            subsystem=subsystem,
            registry=registry,
            # The sum over the workers that are alive: a dead worker's connections are gone.
            multiprocess_mode="livesum",
        )

    def on_close(self, context: CloseContext, scope: Scope) -> None:
        """The ``on_close`` hook: count the close and observe its duration.

        Called for a connection that has not ended (by hand), it does nothing.
        """
        if context.state < ConnectionState.CLOSED:
            return
        initiator = context.initiator or "none"
        clean: Literal["true", "false"] = "true" if context.clean else "false"
        outcome = context.outcome or "unknown"
        self.closes.labels(initiator, code_label(context.code, self.keep_codes), clean, outcome).inc()
        duration = context.duration
        assert duration is not None  # ended connections always have one
        self.connection_duration.labels(initiator, clean, outcome).observe(duration)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap ``app`` so that the active-connections gauge follows each WebSocket.

        The gauge goes up when a ``websocket`` scope arrives and down when the app's call
        returns, raises or is cancelled; other scopes pass straight through. Works as a
        Starlette middleware factory too: ``app.add_middleware(metrics.middleware)``.
        """
        return _ConnectionsInProgress(app, self.active_connections.inc)
