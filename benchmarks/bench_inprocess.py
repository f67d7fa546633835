"""Benchmark 1: the per-message cost of the middleware's receive/send path, in process.

One WebSocket connection carries N messages through the echo app (``_apps.echo_app``): each
message is one ``await receive()`` and one ``await send(...)``. Four variants: the app alone,
the app behind a bare pass-through wrapper (``_apps.PassThrough``, two forwarding closures),
behind ``WebSocketCloseMiddleware`` (the default), and behind it with ``count_messages=True``.
The server side is a pair of minimal fakes (``receive`` returns the next prepared message,
``send`` drops it), so nearly all of the time measured is the app's and the wrappers'.
Reported: ns per message, and the ratios; the target is middleware / pass-through.

Time is the thread's CPU time. Within a round every variant runs one connection in turn (in
ABBA order), a few times over, and the round's figure per variant is its fastest run: a slow
patch of the machine (another process, a noisy neighbour VM) lasts longer than one run and
so slows every variant alike, instead of landing on one of them. The spread across rounds is
shown.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable

from asgi_ws_close import WebSocketCloseMiddleware
from benchmarks._apps import ASGIApp, Message, PassThrough, Receive, Scope, Send, echo_app
from benchmarks._common import BenchResult, Check, Row, Spread, interleaved, ratios

__all__ = ["fastest_runs", "ns_per_message", "run", "ws_scope"]

NAME = "inprocess"
TITLE = "in-process receive/send path"
VARIANTS = ("app alone", "pass-through", "middleware", "middleware, counting")
APPS: dict[str, ASGIApp] = {
    "app alone": echo_app,
    "pass-through": PassThrough(echo_app),
    "middleware": WebSocketCloseMiddleware(echo_app),
    "middleware, counting": WebSocketCloseMiddleware(echo_app, count_messages=True),
}
_PAYLOAD = bytes(1024)


def ws_scope() -> Scope:
    """A WebSocket scope with the keys uvicorn puts in one (size matters for benchmark 4)."""
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"upgrade", b"websocket")],
        "subprotocols": [],
        "state": {},
        "extensions": {"websocket.http.response": {}},
    }


def _fakes(count: int) -> tuple[Receive, Send]:
    messages: list[Message] = [{"type": "websocket.connect"}]
    messages += [{"type": "websocket.receive", "bytes": _PAYLOAD, "text": None}] * count
    messages.append({"type": "websocket.disconnect", "code": 1000, "reason": ""})
    next_message = iter(messages).__next__

    async def receive() -> Message:
        return next_message()

    async def send(message: Message) -> None:
        return None

    return receive, send


def _drive(awaitable: Awaitable[None]) -> None:
    # Nothing on this path suspends, so the coroutine runs to completion in one step: no event
    # loop, whose scheduling would only add noise to a sub-microsecond figure.
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration:
        return
    steps.close()
    raise RuntimeError("the connection suspended: the fakes must never block")


def ns_per_message(app: ASGIApp, count: int) -> float:
    """Time one connection of ``count`` echoed messages; return ns per message."""
    receive, send = _fakes(count)
    scope = ws_scope()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection landing in one variant's run would be charged to it alone
    try:
        # CPU time of this thread, not the wall clock: time spent descheduled while other
        # processes ran is not the code's. (Cache misses they caused still count.)
        started = time.thread_time_ns()
        _drive(app(scope, receive, send))
        elapsed = time.thread_time_ns() - started
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed / count


def fastest_runs(count: int, repeats: int) -> dict[str, float]:
    """One round: each variant's fastest of ``repeats`` runs, the variants taking turns.

    Interference from other processes only ever slows a run; taking turns spreads it over
    every variant instead of one.
    """
    runs = interleaved(repeats, VARIANTS, lambda variant: ns_per_message(APPS[variant], count))
    return {variant: min(runs[variant]) for variant in VARIANTS}


def run(quick: bool) -> BenchResult:
    count, repeats, rounds = (4_000, 15, 5) if quick else (5_000, 25, 15)
    # Quick mode catches gross regressions only.
    limit = 2.0 if quick else 1.15
    for app in APPS.values():  # warm-up: caches, specialisation of the bytecode
        ns_per_message(app, count)
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(rounds):
        for variant, fastest in fastest_runs(count, repeats).items():
            times[variant].append(fastest)
    alone, passthrough, middleware, counting = (Spread.of(times[v]) for v in VARIANTS)
    vs_passthrough = Spread.of(ratios(times["middleware"], times["pass-through"]))
    vs_alone = Spread.of(ratios(times["middleware"], times["app alone"]))
    passthrough_vs_alone = Spread.of(ratios(times["pass-through"], times["app alone"]))
    overhead = Spread.of([m - p for m, p in zip(times["middleware"], times["pass-through"], strict=True)])

    result = BenchResult(1, NAME, f"{TITLE} (best of {repeats} x {count:,} messages, {rounds} rounds)")
    check = Check("middleware / pass-through, ns per message", vs_passthrough.median, "<=", limit)
    result.add(
        Row(
            "ns/message: middleware vs pass-through wrapper",
            passthrough.format(".0f"),
            middleware.format(".0f"),
            vs_passthrough.format(".3f", "x"),
            check,
        )
    )
    result.add(
        Row(
            "ns/message: middleware vs app alone",
            alone.format(".0f"),
            middleware.format(".0f"),
            vs_alone.format(".3f", "x"),
        )
    )
    result.add(
        Row(
            "ns/message: pass-through vs app alone",
            alone.format(".0f"),
            passthrough.format(".0f"),
            passthrough_vs_alone.format(".3f", "x"),
        )
    )
    result.add(Row("ns/message added over pass-through", "", overhead.format(".0f", " ns"), ""))
    result.add(
        Row(
            "ns/message: count_messages=True vs pass-through wrapper (opt-in, no target)",
            passthrough.format(".0f"),
            counting.format(".0f"),
            Spread.of(ratios(times["middleware, counting"], times["pass-through"])).format(".3f", "x"),
        )
    )
    return result
