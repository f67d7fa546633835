"""Child processes: uvicorn servers and the load-generating client, each stopped by its own PID.

Every wait is bounded: lines are read with ``select`` and a deadline, and a child that does not
exit after SIGTERM gets SIGKILL. A child's stderr goes to a temporary file whose tail is shown
when something fails.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from benchmarks._apps import CONTROL_QUERY, PASS_THROUGH_QUERY, WITH_QUERY, WITHOUT_QUERY
from benchmarks._common import Check, Row, Spread, interleaved, ratios

__all__ = ["CONTROL", "PASS_THROUGH", "ROOT", "VARIANTS", "Client", "Rates", "Server", "rate_rows", "served_rates"]

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0
RUN_TIMEOUT = START_TIMEOUT + 60.0  # the first run of a server also waits for it to accept
STOP_TIMEOUT = 10.0

_P = TypeVar("_P", bound="_JsonLineProcess")


class _JsonLineProcess:
    """``python -m MODULE ARGS...`` run from the repository root, speaking JSON lines."""

    def __init__(self, module: str, *args: str) -> None:
        self.description = " ".join((module, *args))
        self._stderr = tempfile.TemporaryFile()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._buffer = b""

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stderr_tail(self, limit: int = 4000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def _failure(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"{self.description} (pid {self.proc.pid}): {what}\n--- its stderr ---\n{self.stderr_tail()}"
        )

    def read_json(self, timeout: float) -> dict[str, Any]:
        """Read the next JSON line, waiting at most ``timeout`` seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure(f"no answer within {timeout:.0f} s")
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise self._failure(f"exited with status {self.proc.wait(STOP_TIMEOUT)}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise self._failure(answer["error"])
        return answer

    def stop(self) -> None:
        """Close stdin, SIGTERM this child (by its PID), SIGKILL it if it lingers; reap it."""
        proc = self.proc
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()
        self._stderr.close()


class Server(_JsonLineProcess):
    """A uvicorn process serving ``_apps.server_app(app)`` (both variants) with ``--ws ws``."""

    def __init__(self, app: str, ws: str = "websockets") -> None:
        super().__init__("benchmarks._server", "--app", app, "--ws", ws)
        self.app = app
        try:
            # The child prints its port once its socket listens: connections queue from then on.
            self.port = int(self.read_json(START_TIMEOUT)["port"])
        except BaseException:
            self.stop()  # no ``with`` block owns it yet
            raise

    def cpu_seconds(self) -> float:
        """CPU time used so far by all the server's threads, in seconds (ns resolution)."""
        return _cpu_seconds(self.proc.pid)


def _cpu_seconds(pid: int) -> float:
    # Linux: /proc/PID/task/TID/schedstat starts with the ns spent on a CPU; the ticks of
    # /proc/PID/stat (10 ms) would be too coarse for runs of a second or less.
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return total / 1e9


class Client(_JsonLineProcess):
    """The load generator (``_client.py``): one process, reused for every run."""

    def __init__(self) -> None:
        super().__init__("benchmarks._client")

    def call(self, op: str, timeout: float, **params: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **params}) + "\n").encode())
        self.proc.stdin.flush()
        return self.read_json(timeout)

    def seconds(self, op: str, timeout: float, **params: Any) -> float:
        return float(self.call(op, timeout, **params)["seconds"])


@dataclass(frozen=True)
class Rates:
    """One variant's rates, one per round: by the wall clock, and per second of server CPU."""

    wall: list[float]
    cpu: list[float]


#: The two variants of every served comparison, as ``_apps.SideBySide`` tells them apart; the
#: bare pass-through wrapper, for scale where the app has it; and the A/A control: the app
#: alone again, measured as if it were a third variant. Its ratio to "without" is what this
#: machine's noise alone makes of two identical servers.
VARIANTS = ("without", "with")
PASS_THROUGH = "pass-through"
CONTROL = "A/A control"
_QUERIES = {"without": WITHOUT_QUERY, "with": WITH_QUERY, PASS_THROUGH: PASS_THROUGH_QUERY, CONTROL: CONTROL_QUERY}


def served_rates(
    client: Client,
    app: str,
    ws: str,
    op: str,
    count: int,
    rounds: int,
    servers: int,
    repeats: int,
    variants: tuple[str, ...] = VARIANTS,
    **params: Any,
) -> dict[str, Rates]:
    """Serve ``app`` (a side-by-side app) and measure ``variants``; return their rates per round.

    One server process runs every variant (``_apps.SideBySide``), so that they share the
    process (memory layout, hash seed, CPU placement), and ``servers`` fresh processes in turn
    average out what one process has on its own. In a round the variants take turns
    ``repeats`` times, in ABBA order, with the same client code and the same count, and each
    one's rate for the round is its best run: interference from the rest of the machine only
    ever slows a run, and a slow patch lasts longer than one run, so taking turns spreads it
    over both. One unmeasured warm-up run per variant comes first; it doubles as the
    readiness check (it waits in the listen backlog until uvicorn accepts). Each run is
    measured twice: ``count`` / wall seconds (what the client saw), and ``count`` / the CPU
    seconds the server process used meanwhile (only one variant runs at a time).
    """
    rates = {variant: Rates([], []) for variant in variants}
    for index in range(servers):
        # Every other process starts with the other variant, so that neither goes first more often.
        order = variants if index % 2 == 0 else variants[::-1]
        with Server(app, ws) as server:
            for variant in order:  # the unmeasured warm-up runs
                _one_run(client, server, op, count, params, variant)
            runs = interleaved(rounds * repeats, order, partial(_one_run, client, server, op, count, params))
        for variant in variants:
            for start in range(0, len(runs[variant]), repeats):
                turns = runs[variant][start : start + repeats]
                rates[variant].wall.append(max(wall for wall, _ in turns))
                rates[variant].cpu.append(max(cpu for _, cpu in turns))
    return rates


def _one_run(
    client: Client, server: Server, op: str, count: int, params: dict[str, Any], variant: str
) -> tuple[float, float]:
    # (rate by the wall clock, rate per server CPU-second)
    cpu_before = server.cpu_seconds()
    wall = client.seconds(op, RUN_TIMEOUT, port=server.port, query=_QUERIES[variant], count=count, **params)
    cpu = server.cpu_seconds() - cpu_before
    return count / wall, count / cpu


def rate_rows(unit: str, case: str, rates: dict[str, Rates], limit: float | None) -> list[Row]:
    """Two summary rows for a served comparison: wall-clock rates, and per server CPU-second.

    The target (if any) is checked on the rate per server CPU-second: the server is the
    bottleneck and CPU-bound in these runs, so on an idle machine the two agree, while on a
    shared one the wall clock also measures whatever else got the CPU.
    """
    without, with_ = (rates[variant] for variant in VARIANTS)
    wall = Spread.of(ratios(with_.wall, without.wall))
    cpu = Spread.of(ratios(with_.cpu, without.cpu))
    check = None
    if limit is not None:
        check = Check(f"with / without, {unit} per server CPU-second, {case}", cpu.median, ">=", limit)
    rows = [
        Row(
            f"{unit}/s (wall clock), {case}",
            Spread.of(without.wall).format(),
            Spread.of(with_.wall).format(),
            wall.format(".3f", "x"),
        ),
        Row(
            f"{unit} per server CPU-second, {case}",
            Spread.of(without.cpu).format(),
            Spread.of(with_.cpu).format(),
            cpu.format(".3f", "x"),
            check,
        ),
    ]
    for extra, label in (
        (PASS_THROUGH, "bare pass-through wrapper (for scale)"),
        (CONTROL, "A/A control: the app alone again (noise floor)"),
    ):
        if extra in rates:
            rows.append(
                Row(
                    f"{unit} per server CPU-second, {case}: {label}",
                    Spread.of(without.cpu).format(),
                    Spread.of(rates[extra].cpu).format(),
                    Spread.of(ratios(rates[extra].cpu, without.cpu)).format(".3f", "x"),
                )
            )
    return rows
