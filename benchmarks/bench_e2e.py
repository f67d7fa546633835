"""Benchmark 2: end-to-end WebSocket throughput, uvicorn with and without the middleware.

For each of uvicorn's WebSocket implementations (websockets, websockets-sansio, wsproto), one
uvicorn process serves the raw echo app (``_apps.echo_app``) both alone and behind
``WebSocketCloseMiddleware`` (``_apps.SideBySide``: the query string of the handshake picks
the variant). A client in another process (``_client.ws_echo``) sends a fixed count of 1 KiB
binary messages on one connection, in windows of 64 (each window written at once, its echoes
read and checked before the next); the variants take turns connection by connection (see
``_procs.served_rates``). Reported: echoed messages/s by the wall clock and per second of
server CPU, with the with/without ratio per round.
"""

from __future__ import annotations

from benchmarks._common import BenchResult
from benchmarks._procs import CONTROL, PASS_THROUGH, VARIANTS, Client, rate_rows, served_rates

__all__ = ["IMPLEMENTATIONS", "run"]

NAME = "e2e"
TITLE = "end-to-end WebSocket echo, 1 KiB messages"
IMPLEMENTATIONS = ("websockets", "websockets-sansio", "wsproto")
WINDOW = 64  # messages in flight: the server is busy for ~1 ms per window, then gets the next


def run(quick: bool) -> BenchResult:
    count, repeats, rounds, servers = (500, 3, 5, 1) if quick else (1_000, 10, 6, 3)
    # Quick mode catches gross regressions only: on 2 shared cores single runs swing by 2x.
    limit = 0.5 if quick else 0.99
    title = f"{TITLE} (best of {repeats} x {count:,} messages, {rounds * servers} rounds, {servers} server processes)"
    result = BenchResult(2, NAME, title)
    with Client() as client:
        for ws in IMPLEMENTATIONS:
            rates = served_rates(
                client,
                "echo",
                ws,
                "ws_echo",
                count,
                rounds,
                servers,
                repeats,
                (*VARIANTS, PASS_THROUGH, CONTROL),
                size=1024,
                window=WINDOW,
            )
            for row in rate_rows("messages", f"--ws {ws}", rates, limit):
                result.add(row)
    return result
