"""Prometheus metrics of WebSocket closes, with prometheus-client.

Install with `pip install "asgi-ws-close[prometheus]"`, then:

```python
from asgi_ws_close import WebSocketCloseMiddleware
from asgi_ws_close.integrations.prometheus import PrometheusCloseMetrics, exposition_registry

metrics = PrometheusCloseMetrics()  # once per process: it registers its metrics
app = metrics.middleware(WebSocketCloseMiddleware(app, on_close=metrics.on_close))
registry = exposition_registry()  # serve generate_latest(registry) at /metrics
```

docs/observability.md has the whole recipe, for one process, `uvicorn --workers N` and
gunicorn.

The metrics (with the default `namespace="websocket"`, `subsystem="server"`):

* `websocket_server_closes_total{initiator, code, clean, outcome}`: counter, one per ended
  connection, rejected handshakes included. `outcome` is the context's
  `CloseContext.outcome` (`client_closed`, `app_closed`,
  `rejected`, `app_error`, `dropped`, `server_timeout`, `server_shutdown`,
  `server_error`, or `unknown` where the server cannot tell); `initiator` is `client`,
  `app`, `server` or `none` (the transport was lost); `code` is a bounded label from
  `code_label` (registered codes as themselves, others as
  `1xxx`-`4xxx` or `other`); `clean` is `true` or `false`. Reasons are never labels.
* `websocket_server_connection_duration_seconds{initiator, clean, outcome}`: histogram of the time
  from the handshake request to the end, in seconds (`DEFAULT_DURATION_BUCKETS`).
* `websocket_server_active_connections`: gauge of the WebSocket connections being served,
  from the handshake request until the app's task ends. The `on_close` hook only runs at
  the end, so this one needs `PrometheusCloseMetrics.middleware` around the app; it
  costs nothing per message.

Multiprocess mode (gunicorn or `uvicorn --workers N` with `PROMETHEUS_MULTIPROC_DIR`)
works as prometheus-client documents it: the counter and the histogram add up across
workers, and the gauge is `multiprocess_mode="livesum"`, the sum over live workers. Serve
`exposition_registry` at `/metrics`: in multiprocess mode it reads every worker's
files through `LiveMultiProcessCollector`, which first drops the live-gauge files of
the workers that no longer run (`mark_dead_workers`). A worker that dies without a
hook (`uvicorn --workers N` restarts a killed worker silently) so stops counting its open
connections at the next scrape, while its counter and histogram files, every close it
recorded, stay. `PrometheusCloseMetrics` does the same sweep once when it is created
in a worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Literal

from .._record import CloseContext
from .._sanitize import code_label
from .._tracker import ConnectionState
from .._types import ASGIApp, Scope
from . import DEFAULT_DURATION_BUCKETS, _ConnectionsMiddleware

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.metrics_core import Metric
    from prometheus_client.multiprocess import MultiProcessCollector
except ImportError as exc:
    raise ImportError(
        'asgi_ws_close.integrations.prometheus needs prometheus-client: pip install "asgi-ws-close[prometheus]"'
    ) from exc

__all__ = [
    "DEFAULT_DURATION_BUCKETS",
    "LiveMultiProcessCollector",
    "PrometheusCloseMetrics",
    "exposition_registry",
    "mark_dead_workers",
]


class PrometheusCloseMetrics:
    """The close metrics of a process, with the hook and the middleware that feed them.

    Create it once per process (a second instance on the same registry would register the
    same names twice, which prometheus-client refuses with `ValueError`), then pass
    `on_close` to `WebSocketCloseMiddleware` and wrap the app
    with `middleware` for the active-connections gauge.

    Args:
        registry: Where to register the metrics: prometheus-client's default `REGISTRY`,
            another `CollectorRegistry`, or `None` for none.
        namespace: The first part of the metric names.
        subsystem: The second part of the metric names.
        keep_codes: Close codes that get a `code` label of their own even outside the
            registry, typically the app's own 4000-4999 codes (`{4001, 4003}`). A fixed
            set: each may become a time series.
        duration_buckets: The upper bounds of the duration histogram, in seconds.

    Attributes:
        closes: The `closes_total` `Counter`.
        connection_duration: The `connection_duration_seconds`
            `Histogram`.
        active_connections: The `active_connections` `Gauge`.
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
        # A worker starting (uvicorn restarts a killed one): the dead workers' gauges go.
        directory = _multiprocess_dir()
        if directory is not None:
            mark_dead_workers(directory)

    def on_close(self, context: CloseContext, scope: Scope) -> None:
        """The `on_close` hook: count the close and observe its duration.

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

    @property
    def middleware(self) -> Callable[[ASGIApp], ASGIApp]:
        """A middleware factory: `metrics.middleware(app)` wraps `app` so that the
        active-connections gauge follows each WebSocket.

        The gauge goes up when a `websocket` scope arrives and down when the app's call
        returns, raises or is cancelled; other scopes pass straight through. Works as a
        Starlette middleware factory too, Sentry's Starlette integration or not:
        `app.add_middleware(metrics.middleware)`.
        """
        return _ConnectionsMiddleware(self.active_connections.inc)


# Multiprocess mode: the live gauges of dead workers.

#: prometheus-client's live gauge files: `gauge_<mode>_<pid>.db`, mode `live*`.
_LIVE_GAUGE_PREFIX = "gauge_live"


def _multiprocess_dir() -> str | None:
    """The multiprocess directory, as prometheus-client reads it; `None` outside that mode."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")
    return path if path and os.path.isdir(path) else None


def _running(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie has exited)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:  # gone since, or no /proc at all (not Linux): kill() is all there is
        return not Path("/proc/self/stat").exists()
    except OSError:
        return True
    # The command name (field 2) is in parentheses and may hold anything; the state follows.
    return stat[stat.rindex(")") + 2 :][:1] != "Z"


def mark_dead_workers(path: str | os.PathLike[str] | None = None) -> list[int]:
    """Remove the live-gauge files of the worker processes that no longer run.

    prometheus-client keeps a `gauge_live*_<pid>.db` file per process and gauge mode;
    `multiprocess_mode="livesum"` sums every file it finds, so a worker that died without
    `prometheus_client.multiprocess.mark_process_dead` being called for it (a SIGKILL,
    an out-of-memory kill, `uvicorn --workers N`, which has no hook) keeps adding the
    connections it had open. This removes those files, as `mark_process_dead` does, for
    every PID in the directory that is not a running process (or is a zombie). Counter and
    histogram files are never touched: the closes a dead worker recorded still count.

    One directory listing, and one `kill(pid, 0)` per live-gauge file; the directory must
    belong to processes of this PID namespace (one server, one container), as
    prometheus-client's PID-named files assume. A dead worker's PID taken over by an
    unrelated process keeps its file until that one ends too.

    Args:
        path: The multiprocess directory; default `PROMETHEUS_MULTIPROC_DIR`.

    Returns:
        The PIDs whose files were removed, sorted.
    """
    directory = os.fspath(path) if path is not None else _multiprocess_dir()
    if directory is None:
        return []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    dead: set[int] = set()
    alive: set[int] = set()
    for name in names:
        if not (name.startswith(_LIVE_GAUGE_PREFIX) and name.endswith(".db")):
            continue
        pid_text = name[: -len(".db")].rpartition("_")[2]
        if not pid_text.isdigit():
            continue  # not a PID: a process_identifier of the app's own (left alone)
        pid = int(pid_text)
        if pid in alive:
            continue
        if pid not in dead:
            if _running(pid):
                alive.add(pid)
                continue
            dead.add(pid)
        try:
            os.remove(os.path.join(directory, name))
        except FileNotFoundError:  # another worker's sweep got it first
            pass
    return sorted(dead)


class LiveMultiProcessCollector:
    """prometheus-client's `MultiProcessCollector`,
    minus the live gauges of dead workers.

    Each collection (each scrape of `/metrics`) first calls `mark_dead_workers` on
    the directory, then merges every worker's files as `MultiProcessCollector` does.

    Args:
        registry: Where to register it (`None`: nowhere).
        path: The multiprocess directory; default `PROMETHEUS_MULTIPROC_DIR`.
    """

    def __init__(self, registry: CollectorRegistry | None, path: str | os.PathLike[str] | None = None) -> None:
        directory = os.fspath(path) if path is not None else _multiprocess_dir()
        if directory is None or not os.path.isdir(directory):
            raise ValueError("env PROMETHEUS_MULTIPROC_DIR is not set or not a directory")
        self.path = directory
        self._collector = MultiProcessCollector(None, directory)  # type: ignore[no-untyped-call]
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterable[Metric]:
        mark_dead_workers(self.path)
        metrics: Iterable[Metric] = self._collector.collect()  # type: ignore[no-untyped-call]
        return metrics


def exposition_registry(registry: CollectorRegistry = REGISTRY) -> CollectorRegistry:
    """The registry to serve at `/metrics`, in one process or several.

    Without `PROMETHEUS_MULTIPROC_DIR`: `registry` itself. In multiprocess mode: a new
    `CollectorRegistry` holding a `LiveMultiProcessCollector`
    (prometheus-client's multiprocess recipe, dead workers' live gauges dropped at each
    scrape); `registry` is then unused, since every worker's metrics are in the files.
    """
    if _multiprocess_dir() is None:
        return registry
    exposition = CollectorRegistry()
    LiveMultiProcessCollector(exposition)
    return exposition
