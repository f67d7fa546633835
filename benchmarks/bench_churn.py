"""Benchmark 3: connection churn, uvicorn with and without the middleware.

The same side-by-side echo server as benchmark 2, for each WebSocket implementation; the
client opens and closes connections as fast as it can over a few concurrent sockets: opening
handshake, client-initiated closing handshake, server-side TCP close. This is where the
middleware's per-connection work (its tracker, context, context variable and record) shows.
Reported: connections opened and closed per second (wall clock, and per second of server
CPU), and the with/without ratio per round.
There is no target in the issue for this one; the figures are for the README.
"""

from __future__ import annotations

from benchmarks._common import BenchResult
from benchmarks._procs import CONTROL, VARIANTS, Client, rate_rows, served_rates
from benchmarks.bench_e2e import IMPLEMENTATIONS

__all__ = ["run"]

NAME = "churn"
TITLE = "connection churn (open + close)"
CONCURRENCY = 4  # a few connections in flight keep the server busy while each waits on the network


def run(quick: bool) -> BenchResult:
    count, repeats, rounds, servers = (100, 2, 5, 1) if quick else (100, 10, 6, 3)
    title = f"{TITLE} (best of {repeats} x {count:,} connections, {rounds * servers} rounds, {CONCURRENCY} at a time)"
    result = BenchResult(3, NAME, title)
    with Client() as client:
        for ws in IMPLEMENTATIONS:
            rates = served_rates(
                client,
                "echo",
                ws,
                "ws_churn",
                count,
                rounds,
                servers,
                repeats,
                (*VARIANTS, CONTROL),
                concurrency=CONCURRENCY,
            )
            for row in rate_rows("connections", f"--ws {ws}", rates, None):
                result.add(row)
    return result
