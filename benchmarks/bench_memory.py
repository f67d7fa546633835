"""Benchmark 4: memory, per live connection and after many connections (in process).

The server side is faked the way servers are built: one object per connection
(`FakeServerConnection`) that holds the scope, and whose bound methods are the
``receive`` and ``send`` the app gets, as uvicorn's protocol objects are.

* Bytes per live connection (tracemalloc): K connections are started as asyncio tasks, as a
  server would, and each is left suspended in the app's ``await receive()`` (the state of an
  idle connection). The bytes traced between before and after, divided by K, are compared
  between the echo app alone, behind the bare pass-through wrapper, and behind the middleware.
  The fakes and the scopes exist before the baseline, so only what the app and the wrappers
  allocate is counted (the middleware's key in the scope included).

  The target applies to what the middleware holds beyond the pass-through wrapper: its
  record, its relay and the context variable's entry. What any wrapper that sees the
  messages costs (its own coroutine frame, and the frame of the wrapped ``receive`` the app
  is suspended in: about 0.9 kB on CPython 3.13) is shown next to it, and so is the total
  over the app alone.
* Growth (tracemalloc): full connections (connect, one echoed message, client close) run one
  after the other in their own tasks, through the middleware with an ``on_close`` hook (the
  path most likely to keep references). The bytes still traced after ``gc.collect()``, minus
  the bytes after a warm-up, is the growth: anything kept per connection would show up as
  at least several bytes times the number of connections.
* Cyclic garbage: the same connections with the collector off, then ``gc.collect()``: the
  objects per connection that reference counting could not free. Not a target, but a cycle
  through the scope keeps a whole connection (in a real server: its protocol object and
  buffers) alive until the next collection, and costs collector time under churn.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Callable

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware
from benchmarks._apps import ASGIApp, Message, PassThrough, Scope, echo_app
from benchmarks._common import BenchResult, Check, Row, Spread, fmt_int, interleaved
from benchmarks.bench_inprocess import ws_scope

__all__ = ["FakeServerConnection", "run"]

NAME = "memory"
TITLE = "memory"
VARIANTS = ("app alone", "pass-through", "middleware")
APPS: dict[str, ASGIApp] = {
    "app alone": echo_app,
    "pass-through": PassThrough(echo_app),
    "middleware": WebSocketCloseMiddleware(echo_app),
}


class FakeServerConnection:
    """One connection's server side: it owns the scope; ``receive``/``send`` are its methods.

    ``receive`` hands out ``messages`` in order; once they are used up it calls ``on_wait``
    and suspends until ``release`` has a result (the connection is then idle, as a live
    WebSocket waiting for its next message is). ``send`` drops what it gets.
    """

    def __init__(
        self,
        messages: list[Message],
        release: asyncio.Future[Message] | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.scope: Scope = ws_scope()
        self._next = iter(messages).__next__
        self._release = release
        self._on_wait = on_wait

    async def receive(self) -> Message:
        try:
            return self._next()
        except StopIteration:
            if self._release is None:
                raise RuntimeError("the app asked for more messages than the fake has") from None
        if self._on_wait is not None:
            self._on_wait()
        return await self._release

    async def send(self, message: Message) -> None:
        return None

    def serve(self, app: ASGIApp) -> asyncio.Future[None]:
        """Run ``app`` on this connection in a task of its own, as servers do."""
        return asyncio.ensure_future(app(self.scope, self.receive, self.send))


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _bytes_per_live_connection(app: ASGIApp, k: int) -> float:
    loop = asyncio.get_running_loop()
    all_waiting = asyncio.Event()
    waiting = 0

    def on_wait() -> None:
        nonlocal waiting
        waiting += 1
        if waiting == k:
            all_waiting.set()

    releases: list[asyncio.Future[Message]] = [loop.create_future() for _ in range(k)]
    connections = [FakeServerConnection([{"type": "websocket.connect"}], release, on_wait) for release in releases]
    before = _traced()
    tasks = [connection.serve(app) for connection in connections]
    await asyncio.wait_for(all_waiting.wait(), 60)
    during = _traced()
    for release in releases:
        release.set_result({"type": "websocket.disconnect", "code": 1000, "reason": ""})
    await asyncio.gather(*tasks)
    return (during - before) / k


def _run_live(app: ASGIApp, k: int) -> float:
    tracemalloc.start()
    try:
        return asyncio.run(_bytes_per_live_connection(app, k))
    finally:
        tracemalloc.stop()


def _on_close(context: CloseContext, scope: Scope) -> None:
    # Reads the record, as a logging hook would.
    context.snapshot()


def _full_connection() -> FakeServerConnection:
    return FakeServerConnection(
        [
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "bytes": None, "text": "hello"},
            {"type": "websocket.disconnect", "code": 1000, "reason": ""},
        ]
    )


async def _connections(app: ASGIApp, count: int) -> None:
    for _ in range(count):
        await _full_connection().serve(app)


async def _growth(app: ASGIApp, warmup: int, count: int) -> tuple[int, int]:
    await _connections(app, warmup)
    before = _traced()
    await _connections(app, count)
    return before, _traced()


def _run_growth(count: int) -> int:
    app = WebSocketCloseMiddleware(echo_app, on_close=_on_close)
    tracemalloc.start()
    try:
        before, after = asyncio.run(_growth(app, warmup=1_000, count=count))
    finally:
        tracemalloc.stop()
    return after - before


def _cyclic_garbage(app: ASGIApp, count: int) -> float:
    """Objects per connection that only the cyclic collector can free."""
    gc.collect()
    gc.disable()
    try:
        asyncio.run(_connections(app, count))
        return gc.collect() / count
    finally:
        gc.enable()


def run(quick: bool) -> BenchResult:
    k, rounds, count = (2_000, 5, 20_000) if quick else (10_000, 7, 100_000)
    # Over the pass-through wrapper: about 0.3 kB today (quick mode only catches a gross regression).
    per_connection_limit = 1_000.0 if quick else 400.0
    # "No growth": a leak of even one pointer per connection would be 160 kB (quick) or 800 kB.
    growth_limit = 32 * 1024 if quick else 8 * 1024
    _run_live(echo_app, k // 10)  # warm-up: interned names, asyncio's and tracemalloc's own caches
    sizes = interleaved(rounds, VARIANTS, lambda variant: _run_live(APPS[variant], k))
    extra = [m - a for m, a in zip(sizes["middleware"], sizes["app alone"], strict=True)]
    extra_passthrough = [p - a for p, a in zip(sizes["pass-through"], sizes["app alone"], strict=True)]
    alone, middleware = Spread.of(sizes["app alone"]), Spread.of(sizes["middleware"])
    added = Spread.of(extra)
    growth = _run_growth(count)
    garbage = {variant: _cyclic_garbage(APPS[variant], 2_000) for variant in ("app alone", "middleware")}

    passthrough = Spread.of(sizes["pass-through"])
    over_passthrough = Spread.of([m - p for m, p in zip(sizes["middleware"], sizes["pass-through"], strict=True)])

    title = f"{TITLE} ({k:,} live connections x {rounds} rounds; {count:,} connections in sequence)"
    result = BenchResult(4, NAME, title)
    result.add(
        Row(
            "bytes per live connection held by the middleware (over the pass-through wrapper)",
            passthrough.format(".0f", " B"),
            middleware.format(".0f", " B"),
            f"+{over_passthrough.format('.0f', ' B')}",
            Check(
                "bytes per live connection held by the middleware, over the pass-through wrapper",
                over_passthrough.median,
                "<=",
                per_connection_limit,
                " B",
                ".0f",
            ),
        )
    )
    result.add(
        Row(
            "bytes per live connection of any wrapper's frames (pass-through over the app alone)",
            alone.format(".0f", " B"),
            passthrough.format(".0f", " B"),
            f"+{Spread.of(extra_passthrough).format('.0f', ' B')}",
        )
    )
    result.add(
        Row(
            "bytes per live connection, middleware over the app alone (both of the above)",
            alone.format(".0f", " B"),
            middleware.format(".0f", " B"),
            f"+{added.format('.0f', ' B')}",
        )
    )
    result.add(
        Row(
            f"bytes retained after {count:,} connections (after gc)",
            "",
            f"{fmt_int(growth)} B",
            f"{growth / count:.3f} B/connection",
            Check(f"growth after {count:,} connections", growth, "<", growth_limit, " B", ",.0f"),
        )
    )
    result.add(
        Row(
            "objects per connection left to the cyclic GC",
            f"{garbage['app alone']:.1f}",
            f"{garbage['middleware']:.1f}",
            f"+{garbage['middleware'] - garbage['app alone']:.1f}",
        )
    )
    return result
