"""Run uvicorn as a subprocess on 127.0.0.1 and read the records its apps write.

* :func:`run_server` starts ``python -m uvicorn <app_ref> --port 0 ...``, learns the port from
  its "Uvicorn running on" line, keeps draining its output in a thread, and stops it by its own
  PID on exit (SIGTERM, then SIGKILL).
* :func:`wait_for_records` polls the JSONL file written by ``tests/serverapp.py``.
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
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from tests.serverapp import RECORDS_ENV

__all__ = ["REPO_ROOT", "Server", "read_records", "run_server", "wait_for_records"]

REPO_ROOT = Path(__file__).resolve().parent.parent

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
KILL_TIMEOUT = 5.0
POLL_INTERVAL = 0.01

_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


class Server:
    """A running uvicorn subprocess: its port, PID, and the log it has printed so far."""

    def __init__(self, proc: subprocess.Popen[bytes], description: str) -> None:
        self.proc = proc
        self.description = description
        self.port: int = 0
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._drain, name=f"uvicorn-{proc.pid}-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """The server's output (stdout and stderr) so far."""
        with self._lock:
            return "".join(self._lines)

    def describe(self) -> str:
        """A failure message footer: which server, and its log."""
        return f"server {self.description} (pid {self.pid}) log:\n{self.log()}"

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to this server's process (only if it has not been reaped)."""
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """Wait until the process exits; fail with the log if it does not within ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server did not exit within {timeout} s; {self.describe()}") from None

    def stop(self) -> None:
        """SIGTERM this process, wait, SIGKILL it if it is still there; reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(KILL_TIMEOUT)
        self._reader.join(KILL_TIMEOUT)
        stdout: IO[bytes] | None = self.proc.stdout
        if stdout is not None:
            stdout.close()

    def _wait_ready(self, timeout: float) -> None:
        if not self._ready.wait(timeout):
            raise RuntimeError(f"uvicorn did not start within {timeout} s; {self.describe()}")
        if not self.port:
            raise RuntimeError(f"uvicorn exited before it was ready; {self.describe()}")

    def _drain(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for raw in iter(stdout.readline, b""):
                line = raw.decode("utf-8", "replace")
                with self._lock:
                    self._lines.append(line)
                if not self.port:
                    match = _RUNNING.search(line)
                    if match:
                        self.port = int(match.group(1))
                        self._ready.set()
        except (OSError, ValueError):  # the pipe was closed under us at teardown
            pass
        finally:
            self._ready.set()


@contextmanager
def run_server(
    app_ref: str,
    ws_impl: str,
    records_path: Path,
    *,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> Iterator[Server]:
    """Run ``uvicorn app_ref --ws ws_impl`` on 127.0.0.1, an OS-chosen port, cwd = repo root."""
    env = {**os.environ, RECORDS_ENV: str(records_path), "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app_ref,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--ws",
        ws_impl,
        "--log-level",
        "info",
    ]
    proc = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # Own session: a Ctrl-C in the terminal reaches pytest, which stops the server itself.
        start_new_session=True,
    )
    server = Server(proc, f"{app_ref} --ws {ws_impl}")
    try:
        server._wait_ready(startup_timeout)
        yield server
    finally:
        server.stop()


def read_records(path: Path) -> list[dict[str, Any]]:
    """All complete lines of the JSONL records file (a line still being written is skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def wait_for_records(
    path: Path,
    conn_id: str,
    sources: Collection[str] = frozenset({"handler", "on_close"}),
    timeout: float = 10.0,
    *,
    server: Server | None = None,
) -> list[dict[str, Any]]:
    """Poll ``path`` until lines for ``conn_id`` exist from every one of ``sources``.

    Returns every line for ``conn_id`` (in file order). Fails with the lines found so far,
    and the server's log when ``server`` is given, if they do not all appear within
    ``timeout`` seconds.
    """
    wanted = set(sources)
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in read_records(path) if line.get("id") == conn_id]
        if wanted <= {line.get("source") for line in lines}:
            return lines
        if time.monotonic() >= deadline:
            footer = f"\n{server.describe()}" if server is not None else ""
            raise AssertionError(
                f"timed out after {timeout} s waiting for records {sorted(wanted)} of "
                f"connection {conn_id!r} in {path}; found: {lines!r}{footer}"
            )
        time.sleep(POLL_INTERVAL)
