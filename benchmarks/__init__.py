"""Benchmarks for `asgi_ws_close`: what the middleware costs, measured side by side.

Run all six from the repository root (the dev or test dependency group installed)::

    python -m benchmarks                # full mode: the figures for the README (several minutes)
    python -m benchmarks --quick        # CI mode: fails only on a gross regression (< ~90 s)
    python -m benchmarks --only memory  # one benchmark: inprocess, e2e, churn, memory, http, connection

``python benchmarks/run.py [--quick] [--only NAME]`` is the same command. Every comparison is
interleaved (with and without the middleware alternate round by round, in ABBA order) and
reported as the median of at least five rounds with its min–max spread; the run ends with a
Markdown summary table and PASS/FAIL per target. The exit status is 1 if a target fails.
"""

from __future__ import annotations
