"""Benchmark 5: plain HTTP requests through a Starlette app with and without the middleware.

Two uvicorn processes serve the same Starlette app with one trivial route (``GET /`` -> "ok"),
one of them with ``Middleware(WebSocketCloseMiddleware)``; for ``http`` scopes the middleware
only checks the scope type and forwards. A client in another process makes a fixed count of
requests over a few keep-alive connections; the servers take turns round by round. Reported:
requests/s (wall clock, and per second of server CPU) and the with/without ratio per round.
"""

from __future__ import annotations

from benchmarks._common import BenchResult
from benchmarks._procs import Client, rate_rows, served_rates

__all__ = ["run"]

NAME = "http"
TITLE = "HTTP GET through Starlette"
APPS = ("http", "http+middleware")
CONCURRENCY = 4  # keep-alive connections; enough to keep uvicorn's single loop busy


def run(quick: bool) -> BenchResult:
    count, rounds, blocks = (2_000, 4, 2) if quick else (3_000, 3, 8)
    # Quick mode catches gross regressions only (round ratios swing 0.7x-1.4x on 2 cores).
    limit = 0.5 if quick else 0.99
    result = BenchResult(
        5, NAME, f"{TITLE} ({count:,} requests x {rounds * blocks} rounds, {CONCURRENCY} keep-alive connections)"
    )
    with Client() as client:
        rates = served_rates(client, APPS, "websockets", "http", count, rounds, blocks, concurrency=CONCURRENCY)
    for row in rate_rows("requests", "uvicorn (h11) + Starlette", rates, APPS, limit):
        result.add(row)
    return result
