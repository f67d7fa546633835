"""The one server-process runner of the test tiers: start a server command on a free port, wait
until it is ready, collect its output, stop it (and its workers) by PID.

Every tier that runs a server in a subprocess goes through :class:`ServerProcess` (usually by
:func:`run_process`): the server matrix (:mod:`tests.support.servers`), the framework apps
(:mod:`tests.support.frameworkapps.server`), the demo under Chromium
(:mod:`tests.support.browser_support`), the observability app (:mod:`tests.support.obsapp`) and
the Autobahn run (:mod:`tests.autobahn.harness`).

A free port, two ways:

* **a readiness line** (``port_line``, the default: uvicorn's "Uvicorn running on"): the
  command binds port 0 and prints the port it got; the first line that matches (group 1 is the
  port) makes the server ready.
* **a reserved port** (``port_line=None``), for a server that cannot report an OS-chosen port
  (granian: its workers bind their own sockets with ``SO_REUSEPORT``, and it prints the port it
  was given). This process binds 127.0.0.1:0 with ``SO_REUSEPORT``, never listens on it, and
  keeps it bound until the server stops, so no other socket can take the port; the command is
  built for that port, and the server is ready at the first TCP connection the port accepts.

The command runs from the repository root, in a session of its own (a Ctrl-C in the terminal
reaches pytest, which stops the server itself), with SIGINT and SIGQUIT reset to their defaults
before ``exec`` (a process started from a shell's background job inherits SIGINT ignored, and
Twisted, hence daphne, then never installs its handler: ``shared/facts/servers.md``, "Method
notes"). Its stdout and stderr are drained by a thread for the whole run (a chatty server never
blocks on a full pipe), kept for failure messages (:meth:`ServerProcess.describe`), and handed
line by line to :meth:`ServerProcess.on_line` for tiers that parse what the server prints.

:meth:`ServerProcess.stop` sends SIGTERM to the server's own PID (the servers' graceful
shutdown, which waits for the apps and their ``on_close`` hooks), SIGKILL if it hangs, and then
stops each worker process that outlived it (hypercorn's, granian's, uvicorn's ``--workers``) by
its own PID and start time, so that a recycled PID is never signalled.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

__all__ = [
    "POLL_INTERVAL",
    "REPO_ROOT",
    "STARTUP_TIMEOUT",
    "UVICORN_PORT_LINE",
    "WAIT_TIMEOUT",
    "ServerProcess",
    "descendants",
    "process_stat",
    "run_process",
    "running",
    "wait_until",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
KILL_TIMEOUT = 5.0
WAIT_TIMEOUT = 10.0
POLL_INTERVAL = 0.01

#: uvicorn's readiness line, with the port it bound.
UVICORN_PORT_LINE = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")

# Runs in the child before the server: SIGINT and SIGQUIT back to their defaults, then exec (same
# PID) the command that follows.
_RESET_SIGNALS_THEN_EXEC = (
    "import os, signal, sys; "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.signal(signal.SIGQUIT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)

T = TypeVar("T")
P = TypeVar("P", bound="ServerProcess")


class ServerProcess:
    """A server subprocess: started by the constructor, ready after :meth:`wait_ready`.

    Args:
        command: The server's command line (``sys.executable`` first for a Python server), or a
            function of the port that returns it: 0 with a ``port_line``, else the reserved port.
        name: What failure messages call the server.
        port_line: The line that tells the bound port (group 1); ``None`` to reserve the port
            in this process and poll it with TCP connections for readiness.
        env: Variables over this process's environment; a ``None`` value removes the variable
            (``PYTHONUNBUFFERED=1`` is always set).
        on_line: Called with each line of output, in the reader thread, under the lock that
            :meth:`wait_for` waits on (so that a predicate sees what it parsed).
    """

    def __init__(
        self,
        command: Sequence[str] | Callable[[int], Sequence[str]],
        *,
        name: str | None = None,
        port_line: re.Pattern[str] | None = UVICORN_PORT_LINE,
        env: Mapping[str, str | None] | None = None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.port = 0
        self._port_line = port_line
        self._on_line = on_line
        self._lines: list[str] = []
        self._changed = threading.Condition()
        # (pid, start time) of the worker processes seen, so that each is stopped by its PID.
        self._workers: set[tuple[int, int]] = set()
        self._reserved = _reserve_port() if port_line is None else None
        if self._reserved is not None:
            self.port = self._reserved.getsockname()[1]
        try:
            argv = list(command(self.port) if callable(command) else command)
            self.name = name or " ".join(argv)
            merged = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _RESET_SIGNALS_THEN_EXEC, *argv],
                cwd=REPO_ROOT,
                env={key: value for key, value in merged.items() if value is not None},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._release_port()
            raise
        self._reader = threading.Thread(target=self._drain, name=f"server-{self.proc.pid}-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        """The server's output (stdout and stderr) so far."""
        with self._changed:
            return "".join(self._lines)

    def describe(self) -> str:
        """A failure message footer: which server, its PID, and its log."""
        return f"server {self.name} (pid {self.pid}) log:\n{self.log()}"

    def on_line(self, line: str) -> None:
        """Each line of output, as it comes (see ``on_line`` above); subclasses may override."""
        if self._on_line is not None:
            self._on_line(line)

    def wait_for(self, find: Callable[[], T | None], timeout: float = WAIT_TIMEOUT, what: str = "condition") -> T:
        """Wait until ``find()`` returns something other than ``None``; return it.

        ``find`` is called under the output lock, after each new line and every poll interval
        (for a predicate on files or sockets); fails with the server's log after ``timeout``
        seconds, or as soon as the server has exited and its output is all read.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = find()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} within {timeout} s; {self.describe_locked()}")
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"no {what}: the server exited; {self.describe_locked()}")
                self._changed.wait(min(left, 5 * POLL_INTERVAL))

    def describe_locked(self) -> str:
        # describe() for a caller that holds the output lock.
        return f"server {self.name} (pid {self.pid}) log:\n{''.join(self._lines)}"

    def wait_for_log(self, pattern: str, timeout: float = WAIT_TIMEOUT) -> str:
        """Wait for a line of output that contains ``pattern``; return it."""
        lines = self._lines
        return self.wait_for(lambda: next((line for line in lines if pattern in line), None), timeout, repr(pattern))

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Block until the server listens; raise with its log if it exited or took too long."""
        if self._port_line is not None:
            try:
                self.wait_for(lambda: self.port or None, timeout, "readiness line")
            except AssertionError as error:
                raise RuntimeError(f"the server did not start: {error}") from None
        else:
            deadline = time.monotonic() + timeout
            while not _accepts(self.port):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited before it was ready; {self.describe()}")
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"the server did not listen within {timeout} s; {self.describe()}")
                time.sleep(POLL_INTERVAL)
        self.note_workers()

    def note_workers(self) -> None:
        """Remember the server's descendant processes now, to stop them by PID later."""
        if self.proc.poll() is None:
            self._workers.update(descendants(self.proc.pid))

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the server's own process (only if it has not been reaped)."""
        self.note_workers()
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """Wait until the process exits; fail with the log if it does not within ``timeout``."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server did not exit within {timeout} s; {self.describe()}") from None
        # Its last lines are read once the pipe is drained: log() is then complete.
        self._reader.join(KILL_TIMEOUT)
        return code

    def stop(self) -> int:
        """SIGTERM the server, wait, SIGKILL it if it is still there; reap it; then its workers.

        Returns its exit status.
        """
        self.note_workers()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(KILL_TIMEOUT)
        # A worker normally exits with its parent; one that did not is killed by its own PID.
        for pid, started in sorted(self._workers):
            if not _wait_gone(pid, started, KILL_TIMEOUT):
                _kill_if_same(pid, started)
                _wait_gone(pid, started, KILL_TIMEOUT)
        self._reader.join(KILL_TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._release_port()
        return self.proc.returncode

    def _release_port(self) -> None:
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None

    def _drain(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for raw in iter(stdout.readline, b""):
                line = raw.decode("utf-8", "replace")
                with self._changed:
                    self._lines.append(line)
                    if self._port_line is not None and not self.port and (match := self._port_line.search(line)):
                        self.port = int(match.group(1))
                    self.on_line(line)
                    self._changed.notify_all()
        except (OSError, ValueError):  # the pipe was closed under us at teardown
            pass
        finally:
            with self._changed:
                self._changed.notify_all()


@contextmanager
def running(server: P, startup_timeout: float = STARTUP_TIMEOUT) -> Iterator[P]:
    """Wait until ``server`` is ready, yield it, and stop it when the block exits."""
    try:
        server.wait_ready(startup_timeout)
        yield server
    finally:
        server.stop()


@contextmanager
def run_process(
    command: Sequence[str] | Callable[[int], Sequence[str]],
    *,
    startup_timeout: float = STARTUP_TIMEOUT,
    name: str | None = None,
    port_line: re.Pattern[str] | None = UVICORN_PORT_LINE,
    env: Mapping[str, str | None] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> Iterator[ServerProcess]:
    """Run ``command`` as a :class:`ServerProcess` until the block exits; yield it once ready."""
    server = ServerProcess(command, name=name, port_line=port_line, env=env, on_line=on_line)
    with running(server, startup_timeout):
        yield server


def wait_until(
    predicate: Callable[[], object], timeout: float, message: Callable[[], str] = lambda: "condition"
) -> None:
    """Poll ``predicate`` until it is true; fail with ``message()`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s: {message()}")
        time.sleep(POLL_INTERVAL)


def _reserve_port() -> socket.socket:
    # Bound, never listening: it holds the port and receives no connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


# Worker processes, by PID and start time (so that a recycled PID is never signalled).


def process_stat(pid: int) -> tuple[int, int] | None:
    """(parent PID, start time) of a process, from /proc; None if it is gone (or no /proc)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> set[tuple[int, int]]:
    """(PID, start time) of every live descendant of process ``pid``."""
    children: dict[int, list[tuple[int, int]]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if entry.isdigit():
            stat = process_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append((int(entry), stat[1]))
    found: set[tuple[int, int]] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child[0])
    return found


def _alive(pid: int, started: int) -> bool:
    stat = process_stat(pid)
    return stat is not None and stat[1] == started


def _wait_gone(pid: int, started: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid, started):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)
    return True


def _kill_if_same(pid: int, started: int) -> None:
    if _alive(pid, started):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
