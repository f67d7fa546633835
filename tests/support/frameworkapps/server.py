"""Run an ASGI app under uvicorn in a subprocess on 127.0.0.1, and read what it reports.

:func:`run_uvicorn` starts ``python -m uvicorn <app> --port 0`` (or any command that starts
uvicorn, such as an example script with ``PORT=0``), learns the port from uvicorn's "Uvicorn
running on" line, drains the output in a thread for the whole run, and stops the process by
its own PID on exit. :meth:`Server.observed` waits, with a deadline, for the lines that the
apps print with :func:`~tests.support.frameworkapps.emit.emit`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.frameworkapps.emit import PREFIX

__all__ = ["REPO_ROOT", "Server", "run_uvicorn", "uvicorn_command"]

REPO_ROOT = Path(__file__).resolve().parents[3]

STARTUP_TIMEOUT = 30.0
WAIT_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class Server:
    """A running uvicorn process: its port, its output so far, and what its apps reported."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.port = 0
        self._lines: list[str] = []
        self._observed: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._drain, name=f"uvicorn-{proc.pid}", daemon=True)
        self._reader.start()

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def observed(self, tag: str, source: str, timeout: float = WAIT_TIMEOUT) -> dict[str, Any]:
        """Wait for the line that ``source`` printed about the connection tagged ``tag``."""
        return self._wait(
            lambda: next((o for o in self._observed if o["tag"] == tag and o["source"] == source), None),
            timeout,
            f"{source!r} line for tag {tag!r}",
        )

    def wait_for_log(self, pattern: str, timeout: float = WAIT_TIMEOUT) -> str:
        """Wait for a line of the server's output that contains ``pattern``; return it."""
        return self._wait(lambda: next((line for line in self._lines if pattern in line), None), timeout, repr(pattern))

    def _wait(self, find: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = find()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {what} within {timeout} s; server output:\n{''.join(self._lines)}")
                self._changed.wait(left)

    def _drain(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for raw in iter(stdout.readline, b""):
                line = raw.decode("utf-8", "replace")
                with self._changed:
                    self._lines.append(line)
                    if line.startswith(PREFIX):
                        self._observed.append(json.loads(line[len(PREFIX) :]))
                    elif not self.port and (match := _RUNNING.search(line)):
                        self.port = int(match.group(1))
                    self._changed.notify_all()
        except (OSError, ValueError):  # the pipe was closed under us at teardown
            pass
        finally:
            with self._changed:
                self._changed.notify_all()

    def stop(self) -> None:
        """SIGTERM our own process, then SIGKILL it if it lingers; reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def uvicorn_command(app_ref: str, *, ws: str = "websockets-sansio") -> list[str]:
    """``python -m uvicorn app_ref`` on 127.0.0.1 and a port the OS chooses."""
    return [sys.executable, "-m", "uvicorn", app_ref, "--host", "127.0.0.1", "--port", "0", "--ws", ws]


@contextmanager
def run_uvicorn(command: Sequence[str], *, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run ``command`` from the repository root until the block exits; yield once it listens."""
    proc = subprocess.Popen(
        list(command),
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # Its own session: a Ctrl-C in the terminal reaches pytest, which stops the server.
        start_new_session=True,
    )
    server = Server(proc)
    try:
        server._wait(lambda: server.port or None, STARTUP_TIMEOUT, "'Uvicorn running on' line")
        yield server
    finally:
        server.stop()
