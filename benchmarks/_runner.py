"""The entry point: run the benchmarks, print each one's figures and targets, then a summary.

The summary is a Markdown table, with the machine and the versions it was measured on, ready
to paste into the README. Exit status: 0 if every target holds, 1 if one fails, 2 if a
benchmark could not run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType

from benchmarks import bench_churn, bench_connection, bench_e2e, bench_http, bench_inprocess, bench_memory
from benchmarks._common import BenchResult

__all__ = ["BENCHMARKS", "main"]

#: name -> run(quick) -> BenchResult, in the issue's order.
BENCHMARKS: dict[str, Callable[[bool], BenchResult]] = {
    bench_inprocess.NAME: bench_inprocess.run,
    bench_e2e.NAME: bench_e2e.run,
    bench_churn.NAME: bench_churn.run,
    bench_memory.NAME: bench_memory.run,
    bench_http.NAME: bench_http.run,
    bench_connection.NAME: bench_connection.run,
}
_VERSIONS = ("asgi-ws-close", "uvicorn", "websockets", "wsproto", "h11", "starlette")


def _versions() -> str:
    found = []
    for name in _VERSIONS:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def _revision() -> str:
    """The commit measured, "+dirty" if the package has uncommitted changes; "" outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "asgi_ws_close"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    if head.returncode != 0:
        return ""
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def _load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or " "


def summary(results: list[BenchResult], quick: bool, load_before: str, seconds: float) -> str:
    """The Markdown summary: machine, versions, and one row per figure."""
    today = datetime.date.today().isoformat()
    mode = "quick (CI thresholds)" if quick else "full"
    revision = _revision()
    at = f" at {revision}" if revision else ""
    lines = [
        f"Measured {today}{at}: {os.cpu_count()} cores ({platform.machine()}, {platform.system()}), "
        f"{platform.python_implementation()} {platform.python_version()}; {_versions()}. "
        f"Mode: {mode}, {seconds:.0f} s; load average (1/5/15 min) {load_before} before, {_load()} after. "
        "Figures: median (min–max) over the rounds; ratios are per round, with and without measured back to back.",
        "",
        "| # | Benchmark | Case | Without middleware | With middleware | Ratio / difference | Target | Result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for row in result.rows:
            check = row.check
            target = check.target if check else ""
            verdict = ("**PASS**" if check.passed else "**FAIL**") if check else ""
            cells = (str(result.number), result.name, row.case, row.without, row.with_, row.ratio, target, verdict)
            lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="CI mode: smaller runs, fail only on gross regressions (< ~90 s)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    args = parser.parse_args(argv)
    # A CI timeout's SIGTERM unwinds like Ctrl-C: the ``with`` blocks stop every child process.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    names = [name for name in BENCHMARKS if not args.only or name in args.only]

    load_before = _load()
    started = time.monotonic()
    results: list[BenchResult] = []
    broken: list[str] = []
    for name in names:
        print(f"== {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            result = BENCHMARKS[name](args.quick)
        except Exception:
            traceback.print_exc()
            print(f"ERROR {name}: the benchmark could not run", flush=True)
            broken.append(name)
            continue
        result.seconds = time.monotonic() - t0
        results.append(result)
        print(f"== [{result.number}] {result.title}: {result.seconds:.1f} s")
        for row in result.rows:
            print(f"   {row.case}: without {row.without or '-'}; with {row.with_ or '-'}; {row.ratio or '-'}")
        for check in result.checks:
            print(f"   {check.line()}")
        print(flush=True)
    seconds = time.monotonic() - started

    print(summary(results, args.quick, load_before, seconds))
    checks = [check for result in results for check in result.checks]
    failed = [check for check in checks if not check.passed]
    print()
    for check in checks:
        print(check.line())
    for name in broken:
        print(f"ERROR {name}")
    print(f"{len(checks) - len(failed)}/{len(checks)} targets hold; {seconds:.1f} s in all.", flush=True)
    if broken:
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
