"""Benchmark 5: plain HTTP requests through a Starlette app with and without the middleware.

One uvicorn process serves two copies of the same Starlette app with one trivial route
(``GET /`` -> "ok"), one of them with ``Middleware(WebSocketCloseMiddleware)``
(``_apps.SideBySide``: the query string picks the copy); for ``http`` scopes the middleware
only checks the scope type and forwards. A client in another process makes a fixed count of
requests over a few keep-alive connections; the variants take turns (see
``_procs.served_rates``). Reported: requests/s (wall clock, and per second of server CPU) and
the with/without ratio per round.
"""

from __future__ import annotations

from benchmarks._common import BenchResult
from benchmarks._procs import CONTROL, VARIANTS, Client, rate_rows, served_rates

__all__ = ["run"]

NAME = "http"
TITLE = "HTTP GET through Starlette"
CONCURRENCY = 4  # keep-alive connections; enough to keep uvicorn's single loop busy


def run(quick: bool) -> BenchResult:
    count, repeats, rounds, servers = (200, 3, 5, 1) if quick else (200, 10, 6, 3)
    # Quick mode catches gross regressions only.
    limit = 0.5 if quick else 0.99
    title = (
        f"{TITLE} (best of {repeats} x {count:,} requests, {rounds * servers} rounds, "
        f"{CONCURRENCY} keep-alive connections)"
    )
    result = BenchResult(5, NAME, title)
    with Client() as client:
        rates = served_rates(
            client,
            "http",
            "websockets",
            "http",
            count,
            rounds,
            servers,
            repeats,
            (*VARIANTS, CONTROL),
            concurrency=CONCURRENCY,
        )
    for row in rate_rows("requests", "uvicorn (h11) + Starlette", rates, limit):
        result.add(row)
    return result
