"""Benchmark 2: end-to-end WebSocket throughput, uvicorn with and without the middleware.

For each of uvicorn's WebSocket implementations (websockets, websockets-sansio, wsproto), two
uvicorn processes serve the raw echo app (``_apps.echo_app``), one of them behind
``WebSocketCloseMiddleware``. A client in a third process (``_client.ws_echo``) sends a fixed
count of 1 KiB binary messages on one connection, in windows of 64 (each window written at
once, its echoes read and checked before the next), and the servers take turns round by
round. Reported: echoed messages/s by the wall clock and per second of server CPU, with the
with/without ratio per round.
"""

from __future__ import annotations

from benchmarks._common import BenchResult
from benchmarks._procs import Client, rate_rows, served_rates

__all__ = ["APPS", "IMPLEMENTATIONS", "run"]

NAME = "e2e"
TITLE = "end-to-end WebSocket echo, 1 KiB messages"
IMPLEMENTATIONS = ("websockets", "websockets-sansio", "wsproto")
APPS = ("echo", "echo+middleware")
WINDOW = 64  # messages in flight: the server is busy for ~1 ms per window, then gets the next


def run(quick: bool) -> BenchResult:
    count, rounds, blocks = (5_000, 4, 2) if quick else (10_000, 3, 8)
    # Quick mode catches gross regressions only: on 2 shared cores a round's ratio swings
    # between about 0.7x and 1.5x, and a CI run saw medians of 0.80x with nothing changed.
    limit = 0.5 if quick else 0.99
    result = BenchResult(2, NAME, f"{TITLE} ({count:,} messages x {rounds * blocks} rounds)")
    with Client() as client:
        for ws in IMPLEMENTATIONS:
            rates = served_rates(client, APPS, ws, "ws_echo", count, rounds, blocks, size=1024, window=WINDOW)
            for row in rate_rows("messages", f"--ws {ws}", rates, APPS, limit):
                result.add(row)
    return result
