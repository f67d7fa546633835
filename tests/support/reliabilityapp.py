"""The apps and the client-side helpers of the reliability tier (faults, load, hostile input).

Server side: uvicorn loads ``tests.support.reliabilityapp:app`` or ``tests.support.reliabilityapp:hostile_app``.
Both are pure ASGI routers (no framework, so that every message is the test's own) wrapped in
:class:`WebSocketCloseMiddleware` with :func:`on_close`, which appends one JSON line per
connection to the file named by ``ASGI_WS_CLOSE_RECORDS`` (``tests/support/servers.py`` sets it)::

    {"id": ..., "source": "on_close", "record": CloseContext.to_dict(), "current": true,
     "scoped": true, "pid": ...}

``current`` says whether :func:`current_close_context` was this connection's own context when
the hook ran, and ``scoped`` whether ``scope[SCOPE_KEY]`` was: both must be true, always (no
cross-talk between connections). Handlers that see the end write a ``"handler"`` line too,
with the ``websocket.disconnect`` they got. Every connection carries a test-chosen ``id``
query parameter.

``hostile_app`` adds the library's observability hooks as users wire them: the ready logging
hook (``log_close``) on the ``asgi_ws_close`` logger, written to the file named by
``ASGI_WS_CLOSE_RELIABILITY_LOG`` through :class:`NaiveFormatter` (every field of the
``ws_close`` extra printed as it is: the worst case for log injection), and, when
prometheus-client is installed, :class:`PrometheusCloseMetrics` served at ``/metrics``.

WebSocket routes (a path may carry a suffix, ``/ws/echo/<anything>``, to tell log lines apart):

* ``/ws/echo``: accept, echo text; ``close <code> <reason>`` makes the app close with them.
* ``/ws/raise-before-accept``, ``/ws/raise-after-accept``: raise RuntimeError there.
* ``/ws/send-after-disconnect``: accept, send ``ready``, then send a tick every few ms until
  ``send()`` raises (the client went away) and let that exception escape; ``?catch=1``: catch
  it, receive the disconnect and return.
* ``/ws/raise-in-send``: echo through a send helper that raises RuntimeError for ``explode``.
* ``/ws/server-send-raises``: echo, but the server's ``send`` (wrapped *outside* the
  middleware) raises OSError for ``explode``.
* ``/ws/cancel-self``: accept, send ``ready``, receive one message, then cancel its own task.
* ``/ws/stall``: accept, send ``ready``, then sleep (bounded) without ever receiving: only
  uvicorn's graceful-shutdown timeout ends it, by cancelling the task.
* ``/ws/double-close``: accept, close with 4000 ``bye``, close again (uvicorn's send raises
  RuntimeError: caught, and named in the handler line), then receive the disconnect.

HTTP routes: ``/gc`` collects garbage and returns the live :class:`CloseContext` and
:class:`CloseTracker` counts, ``len(gc.get_objects())``, ``sys.getallocatedblocks()`` and the
process RSS (after glibc's ``malloc_trim``), as JSON; ``/metrics`` (``hostile_app`` only).

Client side (imported by the tests, never by the server): :func:`fetch_json`,
:func:`fetch_text`, :func:`raise_fd_limit`, :func:`on_close_lines`, :func:`wait_for_on_close`,
:func:`wait_quiescent`, :func:`logged_exceptions` and :func:`publish_figures`.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import http.client
import json
import logging
import os
import re
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from asgi_ws_close import SCOPE_KEY, CloseContext, WebSocketCloseMiddleware, current_close_context, get_close_context
from asgi_ws_close._tracker import CloseTracker
from asgi_ws_close._types import ASGIApp, Message, Receive, Scope, Send
from tests.support.serverapp import RECORDS_ENV

__all__ = [
    "FIGURES_ENV",
    "FULL",
    "FULL_ENV",
    "LOG_ENV",
    "NaiveFormatter",
    "app",
    "fetch_json",
    "fetch_text",
    "logged_exceptions",
    "on_close",
    "on_close_lines",
    "publish_figures",
    "raise_fd_limit",
    "wait_for_on_close",
    "wait_quiescent",
]

#: Set to 1 for the full (long, heavy) runs of the reliability tier; quick mode otherwise.
FULL_ENV = "ASGI_WS_CLOSE_FULL"
FULL = os.environ.get(FULL_ENV, "") not in ("", "0")

#: Set to a file name to have the load and hostile tests append their figures to it (JSON).
FIGURES_ENV = "ASGI_WS_CLOSE_FIGURES"

#: Environment variable naming the file the hostile app's ``asgi_ws_close`` log goes to.
LOG_ENV = "ASGI_WS_CLOSE_RELIABILITY_LOG"

# Bounds on the handlers' own waits: nothing in a handler waits for ever.
_FOLLOW_UP_TIMEOUT = 30.0
_TICK_INTERVAL = 0.005
_TICK_LIMIT = 30.0
_STALL_LIMIT = 60.0


# Server side: the records.


def _query(scope: Mapping[str, Any], name: str) -> str:
    values: list[str] = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name, [""])
    return values[0]


def connection_id(scope: Mapping[str, Any]) -> str:
    """Return the test-chosen ``id`` query parameter of a connection's scope."""
    return _query(scope, "id")


def _append(line: dict[str, Any]) -> None:
    # One open/append per line: readers poll the file while the server runs, and the event
    # loop runs one hook at a time, so lines never interleave.
    with open(os.environ[RECORDS_ENV], "a", encoding="utf-8") as file:
        file.write(json.dumps(line, sort_keys=True) + "\n")


def _line(context: CloseContext, scope: Scope, source: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": connection_id(scope),
        "source": source,
        "record": context.to_dict(),
        "current": current_close_context() is context,
        "scoped": scope.get(SCOPE_KEY) is context,
        "pid": os.getpid(),
        **extra,
    }


def on_close(context: CloseContext, scope: Scope) -> None:
    """The middleware's hook: one line per connection, after it ended."""
    _append(_line(context, scope, "on_close"))


def _handler_record(scope: Scope, **extra: Any) -> None:
    _append(_line(get_close_context(scope), scope, "handler", **extra))


def _plain(message: Mapping[str, Any]) -> dict[str, Any]:
    # The raw ASGI message, JSON-safe, keeping the difference between "no key" and a value.
    return {str(key): value for key, value in message.items()}


# Server side: the WebSocket routes.

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _accept(receive: Receive, send: Send) -> None:
    message = await receive()
    assert message["type"] == "websocket.connect", message
    await send({"type": "websocket.accept"})


async def _text(send: Send, text: str) -> None:
    await send({"type": "websocket.send", "text": text})


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    await _accept(receive, send)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            _handler_record(scope, disconnect=_plain(message))
            return
        text = message.get("text")
        if text is not None and text.startswith("close "):
            _, code, reason = (text + " ").split(" ", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason[:-1]})
            follow_up = await asyncio.wait_for(receive(), _FOLLOW_UP_TIMEOUT)
            _handler_record(scope, disconnect=_plain(follow_up))
            return
        if text is not None:
            await _text(send, text)
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def raise_before_accept(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    raise RuntimeError("boom before accept")


async def raise_after_accept(scope: Scope, receive: Receive, send: Send) -> None:
    await _accept(receive, send)
    await _text(send, "ready")
    raise RuntimeError("boom after accept")


async def send_after_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    await _accept(receive, send)
    await _text(send, "ready")
    deadline = time.monotonic() + _TICK_LIMIT
    try:
        # Pacing, not synchronisation: the client goes away whenever it likes, and the first
        # send after uvicorn noticed raises. Bounded in time.
        while time.monotonic() < deadline:
            await asyncio.sleep(_TICK_INTERVAL)
            await _text(send, "tick")
    except OSError as exc:
        if not _query(scope, "catch"):
            raise
        message = await asyncio.wait_for(receive(), _FOLLOW_UP_TIMEOUT)
        _handler_record(scope, disconnect=_plain(message), send_error=type(exc).__name__)


async def raise_in_send(scope: Scope, receive: Receive, send: Send) -> None:
    async def checked_send(message: Message) -> None:
        # An await on the message path that fails before the message goes out.
        await asyncio.sleep(0)
        if message.get("text") == "explode":
            raise RuntimeError("boom inside send")
        await send(message)

    await echo(scope, receive, checked_send)


async def cancel_self(scope: Scope, receive: Receive, send: Send) -> None:
    await _accept(receive, send)
    await _text(send, "ready")
    await receive()
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    await asyncio.sleep(_FOLLOW_UP_TIMEOUT)  # raises CancelledError at once


async def stall(scope: Scope, receive: Receive, send: Send) -> None:
    await _accept(receive, send)
    await _text(send, "ready")
    await asyncio.sleep(_STALL_LIMIT)


async def double_close(scope: Scope, receive: Receive, send: Send) -> None:
    await _accept(receive, send)
    await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
    try:
        await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
    except RuntimeError as exc:
        error = str(exc)
    else:
        error = ""
    message = await asyncio.wait_for(receive(), _FOLLOW_UP_TIMEOUT)
    _handler_record(scope, disconnect=_plain(message), send_error=error)


WEBSOCKET_ROUTES: dict[str, Handler] = {
    "/ws/echo": echo,
    "/ws/raise-before-accept": raise_before_accept,
    "/ws/raise-after-accept": raise_after_accept,
    "/ws/send-after-disconnect": send_after_disconnect,
    "/ws/raise-in-send": raise_in_send,
    "/ws/server-send-raises": echo,
    "/ws/cancel-self": cancel_self,
    "/ws/stall": stall,
    "/ws/double-close": double_close,
}


def _route(path: str) -> Handler | None:
    base = "/".join(path.split("/")[:3])  # /ws/<name>[/<anything>]
    return WEBSOCKET_ROUTES.get(base)


# Server side: HTTP and lifespan.


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _malloc_trim() -> None:
    # glibc keeps freed memory for reuse; trimming hands it back to the OS, so that RSS shows
    # what is in use rather than the high-water mark. Not glibc: RSS is the high-water mark.
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def gc_stats() -> dict[str, int]:
    """Collect garbage, then count what is left (the ``/gc`` route's answer); RSS after
    ``malloc_trim``."""
    for _ in range(3):
        gc.collect()
    _malloc_trim()
    objects = gc.get_objects()
    contexts = sum(1 for obj in objects if isinstance(obj, CloseContext))
    trackers = sum(1 for obj in objects if isinstance(obj, CloseTracker))
    count = len(objects)
    del objects
    return {
        "contexts": contexts,
        "trackers": trackers,
        "objects": count,
        "blocks": sys.getallocatedblocks(),
        "rss_kib": _rss_kib(),
        "pid": os.getpid(),
    }


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Router:
    """The pure ASGI app behind the middleware: WebSocket routes, ``/gc``, lifespan."""

    def __init__(self, metrics: Callable[[], bytes] | None = None, startup: Callable[[], None] | None = None) -> None:
        self._metrics = metrics
        self._startup = startup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            handler = _route(scope["path"])
            if handler is None:
                await receive()
                await send({"type": "websocket.close", "code": 1000})
                return
            await handler(scope, receive, send)
        elif kind == "http":
            path = scope["path"]
            if path == "/gc":
                await _respond(send, 200, json.dumps(gc_stats()).encode(), b"application/json")
            elif path == "/metrics" and self._metrics is not None:
                await _respond(send, 200, self._metrics(), b"text/plain; version=0.0.4")
            else:
                await _respond(send, 404, b"not found", b"text/plain")
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if self._startup is not None:
                        self._startup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return


class ServerSendFault:
    """Outside the middleware: for ``/ws/server-send-raises``, the server's send raises OSError
    for the text ``explode`` (as a server does for a connection it lost)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or not scope["path"].startswith("/ws/server-send-raises"):
            await self.app(scope, receive, send)
            return

        async def failing_send(message: Message) -> None:
            if message.get("text") == "explode":
                raise OSError("server send failed")
            await send(message)

        await self.app(scope, receive, failing_send)


# Counting on: the fault tests check what was counted when a send fails.
app: ASGIApp = ServerSendFault(WebSocketCloseMiddleware(Router(), on_close=on_close, count_messages=True))


# Server side: the hostile app, with the observability integrations.


class NaiveFormatter(logging.Formatter):
    """Prints the message, then every field of the ``ws_close`` extra as it is (``key=value``).

    The worst case a user may configure: nothing is escaped here, so whatever reaches the
    file is exactly what the integration put in the record.
    """

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "ws_close", None)
        pieces = [record.levelname, record.name, record.getMessage()]
        if isinstance(fields, Mapping):
            pieces.extend(f"{key}={value}" for key, value in _flatten(fields))
        return " | ".join(pieces)


def _flatten(fields: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    flat: list[tuple[str, Any]] = []
    for key, value in fields.items():
        if isinstance(value, Mapping):
            flat.extend(_flatten(value, f"{prefix}{key}."))
        else:
            flat.append((f"{prefix}{key}", value))
    return flat


def _log_to_file() -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(NaiveFormatter())
    logger = logging.getLogger("asgi_ws_close")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _unwrapped(inner: ASGIApp) -> ASGIApp:
    return inner


def _hostile_app() -> ASGIApp:
    from asgi_ws_close.integrations.logging import log_close

    hooks: list[Any] = [on_close, log_close]
    metrics_text: Callable[[], bytes] | None = None
    wrap: Callable[[ASGIApp], ASGIApp] = _unwrapped
    try:
        from prometheus_client import CollectorRegistry, generate_latest

        from asgi_ws_close.integrations.prometheus import PrometheusCloseMetrics
    except ImportError:  # prometheus-client is optional: the metrics test is skipped then
        pass
    else:
        registry = CollectorRegistry()
        metrics = PrometheusCloseMetrics(registry=registry)
        hooks.append(metrics.on_close)
        wrap = metrics.middleware

        def metrics_text() -> bytes:
            return generate_latest(registry)

    router = Router(metrics=metrics_text, startup=_log_to_file)
    return wrap(WebSocketCloseMiddleware(router, on_close=hooks, count_messages=True))


def __getattr__(name: str) -> Any:
    # Built on first use (by uvicorn in the server), never at import in the test process.
    if name == "hostile_app":
        value = _hostile_app()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Client side.


def fetch_json(port: int, path: str, timeout: float = 60.0) -> dict[str, Any]:
    """GET ``http://127.0.0.1:port/path`` and return its JSON body."""
    result: dict[str, Any] = json.loads(fetch_text(port, path, timeout))
    return result


def fetch_text(port: int, path: str, timeout: float = 60.0) -> str:
    """GET ``http://127.0.0.1:port/path`` and return its body as text."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body)
        return body.decode("utf-8")
    finally:
        connection.close()


def raise_fd_limit(needed: int) -> None:
    """Raise this process's soft RLIMIT_NOFILE to at least ``needed`` (servers started later
    inherit it); skip the test if the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        import pytest

        pytest.skip(f"needs {needed} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def on_close_lines(records: Path) -> dict[str, list[dict[str, Any]]]:
    """The complete ``on_close`` lines of the records file, by connection id."""
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    try:
        text = records.read_text(encoding="utf-8")
    except FileNotFoundError:
        return by_id
    for raw in text.splitlines(keepends=True):
        if raw.endswith("\n"):
            line = json.loads(raw)
            if line["source"] == "on_close":
                by_id[line["id"]].append(line)
    return by_id


def wait_for_on_close(
    records: Path, ids: set[str], timeout: float, describe: Callable[[], str] = str
) -> dict[str, list[dict[str, Any]]]:
    """Poll until every id in ``ids`` has an ``on_close`` line; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        lines = on_close_lines(records)
        missing = ids - lines.keys()
        if not missing:
            return lines
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{len(missing)} of {len(ids)} connections have no on_close record after {timeout} s "
                f"(e.g. {sorted(missing)[:5]}); {describe()}"
            )
        time.sleep(0.02)


#: Readings of /gc in a row, 0.1 s apart, in which the allocated blocks did not fall: settled.
SETTLE_READINGS = 3


def wait_quiescent(port: int, timeout: float) -> dict[str, Any]:
    """The server's /gc figures once no CloseContext is alive and its memory has settled, or
    after ``timeout`` s.

    The hooks run before the app's task returns and uvicorn lets go of the connection, so the
    last connections' contexts may live a moment after their records are written: poll. And
    on a busy machine the server finishes closing transports a while after that: poll on until
    the allocated blocks have not fallen for :data:`SETTLE_READINGS` readings in a row.
    """
    deadline = time.monotonic() + timeout
    lowest: int | None = None
    steady = 0
    while True:
        stats = fetch_json(port, "/gc")
        if stats["contexts"] == 0 and stats["trackers"] == 0:
            steady = steady + 1 if lowest is not None and stats["blocks"] >= lowest else 0
            lowest = stats["blocks"] if lowest is None else min(lowest, stats["blocks"])
            if steady >= SETTLE_READINGS:
                return stats
        if time.monotonic() >= deadline:
            return stats
        time.sleep(0.1)


_LOG_LINE = re.compile(r"^(?:TRACE|DEBUG|INFO|WARNING|ERROR|CRITICAL):")
_TRACEBACK_NOISE = (
    "Traceback (most recent call last):",
    "During handling of the above exception",
    "The above exception",
)


def logged_exceptions(log: str) -> list[str]:
    """The exception lines (``Type: message``) of every "Exception in ASGI application"
    traceback in a uvicorn log, chained exceptions included, in order."""
    found: list[str] = []
    inside = False
    for line in log.splitlines():
        if _LOG_LINE.match(line):
            inside = "Exception in ASGI application" in line
        elif inside and line and not line[0].isspace() and not line.startswith(_TRACEBACK_NOISE):
            found.append(line)
    return found


def publish_figures(test: str, figures: Mapping[str, Any]) -> None:
    """Print a run's figures, and append them to the file named by ``ASGI_WS_CLOSE_FIGURES``."""
    print(f"\n{test} figures: {dict(figures)}")
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps({"test": test, **figures}) + "\n")
