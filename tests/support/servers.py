"""Run real ASGI servers as subprocesses on 127.0.0.1 and read the records their apps write.

Six servers (:data:`SERVERS`): uvicorn with each of its WebSocket implementations, hypercorn,
daphne and granian, each launched with its own command line, the way its users launch it
(``shared/facts/servers.md``, "Server commands"), on a port the OS chooses:

* uvicorn (``--port 0``), hypercorn (``-b 127.0.0.1:0``) and daphne (``-p 0``) bind port 0
  and print the port they got ("Uvicorn running on http://127.0.0.1:PORT", "Running on
  http://127.0.0.1:PORT", "Listening on TCP address 127.0.0.1:PORT"): that line is the
  readiness signal.
* granian cannot report an OS-chosen port (its workers bind their own sockets, and it prints
  the port it was given) and takes no file descriptor; it does bind with ``SO_REUSEPORT``.
  So the test process binds 127.0.0.1:0 with ``SO_REUSEPORT`` itself, never listens on it,
  and keeps it bound while the server runs: the port stays reserved for this test (no other
  socket can take it), granian binds it too, and only granian's listening socket receives
  connections. Readiness is the first TCP connection that the port accepts.

Every server runs in a session of its own with SIGINT and SIGQUIT reset to their defaults
before ``exec`` (a process started from a shell's background job inherits SIGINT ignored, and
Twisted, hence daphne, then never installs its handler: servers.md, "Method notes"). It is
stopped by its own PID on exit (SIGTERM, then SIGKILL), and so are the worker processes that
hypercorn and granian spawn, each by its own PID, should one outlive its parent.

A row that needs a server launched differently names a **profile** (:data:`PROFILES`):
``keepalive`` (each server's WebSocket keepalive ping, with a short pong timeout where the
server has one) and ``trace`` (uvicorn at ``--log-level trace``); each :class:`ServerSpec`
maps a profile to the options it appends, and a server without such an option runs as usual.
:data:`SPEC25_SERVERS` are uvicorn patched to announce ASGI spec 2.5
(``tests/support/uvicorn_spec25.py``): :func:`run_server` runs them, the matrix (:data:`SERVERS`)
does not list them.

:func:`wait_for_records` polls the JSONL file written by ``tests/support/serverapp.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from tests.support.serverapp import RECORDS_ENV

__all__ = [
    "PROFILES",
    "REPO_ROOT",
    "SERVERS",
    "SPEC25_SERVERS",
    "Server",
    "ServerSpec",
    "read_records",
    "run_server",
    "server_spec",
    "server_versions",
    "wait_for_records",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
KILL_TIMEOUT = 5.0
POLL_INTERVAL = 0.01

# Runs in the child before the server: SIGINT and SIGQUIT back to their defaults, then exec
# (same PID) the server's own command line with this Python.
_RESET_SIGNALS_THEN_EXEC = (
    "import os, signal, sys; "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.signal(signal.SIGQUIT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


@dataclass(frozen=True)
class ServerSpec:
    """How to launch one server, and how it tells its port.

    Attributes:
        name: The server, as the middleware's server detection names it.
        package: The distribution whose version names the server in the matrix.
        command: The arguments after ``python -m``, given the app and the port to bind (0
            unless the port is reserved by the test process).
        port_line: The log line that carries the bound port (group 1); ``None`` when the
            test process reserves the port itself.
    """

    name: str
    package: str
    command: Callable[[str, int], list[str]]
    port_line: re.Pattern[str] | None
    #: Other distributions that make up this server (shown next to its version).
    parts: tuple[str, ...] = ()
    #: Named sets of extra command-line options (a :data:`PROFILES` name -> the arguments
    #: appended to :attr:`command`), for rows that need the server launched differently; a
    #: profile the server lacks an option for is absent (it runs with no extra arguments).
    profiles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def argv(self, app_ref: str, port: int, profile: str | None = None) -> list[str]:
        """The arguments after ``python -m``: :attr:`command`, then the ``profile``'s options."""
        if profile is not None and profile not in PROFILES:
            raise ValueError(f"unknown server profile {profile!r}; known: {sorted(PROFILES)}")
        extra = self.profiles.get(profile, ()) if profile is not None else ()
        return [*self.command(app_ref, port), *extra]


def _uvicorn(ws: str, module: str = "uvicorn") -> Callable[[str, int], list[str]]:
    def command(app_ref: str, port: int) -> list[str]:
        return [module, app_ref, "--host", "127.0.0.1", "--port", str(port), "--ws", ws, "--log-level", "info"]

    return command


def _hypercorn(app_ref: str, port: int) -> list[str]:
    return ["hypercorn", app_ref, "--bind", f"127.0.0.1:{port}", "--log-level", "info"]


def _daphne(app_ref: str, port: int) -> list[str]:
    return ["daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "1", app_ref]


def _granian(app_ref: str, port: int) -> list[str]:
    return [
        "granian",
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "info",
        app_ref,
    ]


_UVICORN_RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")

#: The server profiles (:attr:`ServerSpec.profiles`), and what each is for.
PROFILES = {
    "keepalive": "the server's WebSocket keepalive ping on, with a short pong timeout where it has one",
    "trace": "uvicorn at --log-level trace (its message logger wraps the app's send and receive)",
}

# Keepalive: a ping every 0.5 s, and the connection failed if no pong comes within 0.5 s.
_UVICORN_PROFILES = {
    "keepalive": ("--ws-ping-interval", "0.5", "--ws-ping-timeout", "0.5"),
    "trace": ("--log-level", "trace"),
}
_SERVER_PROFILES: dict[str, dict[str, tuple[str, ...]]] = {
    # A ping every second (whole seconds only on the command line: argparse type=int); hypercorn
    # has no ping timeout option (it never fails a connection for a missing pong).
    "hypercorn": {"keepalive": ("--websocket-ping-interval", "1")},
    # Whole seconds only (argparse type=int), and daphne checks its connections every 2 s
    # (Server.timeout_checker): a ping within about 3 s of the last message, then autobahn's
    # autoPingTimeout of 1 s.
    "daphne": {"keepalive": ("--ping-interval", "1", "--ping-timeout", "1")},
    # granian 2.8.9 has no WebSocket ping option (only --http2-keep-alive-*, for HTTP/2).
    "granian": {},
}

#: The servers, by the name the middleware's server detection gives them.
SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec(
            "uvicorn-websockets",
            "uvicorn",
            _uvicorn("websockets"),
            _UVICORN_RUNNING,
            ("websockets",),
            _UVICORN_PROFILES,
        ),
        ServerSpec(
            "uvicorn-websockets-sansio",
            "uvicorn",
            _uvicorn("websockets-sansio"),
            _UVICORN_RUNNING,
            ("websockets",),
            _UVICORN_PROFILES,
        ),
        ServerSpec(
            "uvicorn-wsproto", "uvicorn", _uvicorn("wsproto"), _UVICORN_RUNNING, ("wsproto",), _UVICORN_PROFILES
        ),
        ServerSpec(
            "hypercorn",
            "hypercorn",
            _hypercorn,
            re.compile(r"Running on http://127\.0\.0\.1:(\d+)"),
            ("wsproto",),
            _SERVER_PROFILES["hypercorn"],
        ),
        ServerSpec(
            "daphne",
            "daphne",
            _daphne,
            re.compile(r"Listening on TCP address 127\.0\.0\.1:(\d+)"),
            ("twisted", "autobahn"),
            _SERVER_PROFILES["daphne"],
        ),
        ServerSpec("granian", "granian", _granian, None, (), _SERVER_PROFILES["granian"]),
    )
}

# uvicorn's --ws names, accepted by run_server for the uvicorn-only tests.
_UVICORN_IMPLS = ("websockets", "websockets-sansio", "wsproto")

#: uvicorn patched to announce ASGI spec 2.5 (``tests/support/uvicorn_spec25.py``), one per ``--ws``
#: implementation, named ``uvicorn-<impl>-spec25``. Not matrix columns: run_server accepts
#: these names, :data:`SERVERS` (the matrix) does not list them.
SPEC25_SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec(
            f"uvicorn-{impl}-spec25",
            "uvicorn",
            _uvicorn(impl, module="tests.support.uvicorn_spec25"),
            _UVICORN_RUNNING,
            SERVERS[f"uvicorn-{impl}"].parts,
            _UVICORN_PROFILES,
        )
        for impl in _UVICORN_IMPLS
    )
}


def server_spec(server: str) -> ServerSpec:
    """The spec of ``server``: a name of :data:`SERVERS` or :data:`SPEC25_SERVERS`, or one of
    uvicorn's ``--ws`` choices (that implementation's entry of :data:`SERVERS`)."""
    if server in _UVICORN_IMPLS:
        return SERVERS[f"uvicorn-{server}"]
    spec = SERVERS.get(server) or SPEC25_SERVERS.get(server)
    if spec is None:
        raise KeyError(f"unknown server {server!r}; known: {[*SERVERS, *SPEC25_SERVERS, *_UVICORN_IMPLS]}")
    return spec


def server_versions(name: str) -> dict[str, str]:
    """The installed versions that make up server ``name``: its package, then its parts."""
    spec = server_spec(name)
    return {package: metadata.version(package) for package in (spec.package, *spec.parts)}


class Server:
    """A running server subprocess: its port, PID, and the log it has printed so far."""

    def __init__(self, proc: subprocess.Popen[bytes], description: str, port_line: re.Pattern[str] | None) -> None:
        self.proc = proc
        self.description = description
        self.port: int = 0
        self._port_line = port_line
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        # (pid, start time) of the worker processes seen, so that each is stopped by its PID.
        self._workers: set[tuple[int, int]] = set()
        self._reader = threading.Thread(target=self._drain, name=f"server-{proc.pid}-output", daemon=True)
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
        self._note_workers()
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        """Wait until the process exits; fail with the log if it does not within ``timeout``."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server did not exit within {timeout} s; {self.describe()}") from None

    def stop(self) -> None:
        """SIGTERM this process, wait, SIGKILL it if it is still there; reap it; then its workers."""
        self._note_workers()
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
        stdout: IO[bytes] | None = self.proc.stdout
        if stdout is not None:
            stdout.close()

    def _note_workers(self) -> None:
        if self.proc.poll() is None:
            self._workers.update(_descendants(self.proc.pid))

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self._port_line is not None:
            if not self._ready.wait(timeout):
                raise RuntimeError(f"the server did not start within {timeout} s; {self.describe()}")
            if not self.port:
                raise RuntimeError(f"the server exited before it was ready; {self.describe()}")
        else:
            while not _accepts(self.port):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited before it was ready; {self.describe()}")
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"the server did not listen within {timeout} s; {self.describe()}")
                time.sleep(POLL_INTERVAL)
        self._note_workers()

    def _drain(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for raw in iter(stdout.readline, b""):
                line = raw.decode("utf-8", "replace")
                with self._lock:
                    self._lines.append(line)
                if self._port_line is not None and not self.port:
                    match = self._port_line.search(line)
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
    server: str,
    records_path: Path,
    *,
    profile: str | None = None,
    extra_args: Sequence[str] = (),
    startup_timeout: float = STARTUP_TIMEOUT,
) -> Iterator[Server]:
    """Run ``server`` (see :func:`server_spec`) with ``app_ref`` on 127.0.0.1, on an OS-chosen
    port, with the repository root as its cwd.

    ``profile`` (a name of :data:`PROFILES`) adds that server's options for it (none, if the
    server has no such option); ``extra_args`` are appended after them.
    """
    spec = server_spec(server)
    env = {**os.environ, RECORDS_ENV: str(records_path), "PYTHONUNBUFFERED": "1"}
    reserved: socket.socket | None = None
    port = 0
    if spec.port_line is None:
        reserved = _reserve_port()
        port = reserved.getsockname()[1]
    try:
        argv = [*spec.argv(app_ref, port, profile), *extra_args]
        options = argv[len(spec.command(app_ref, port)) :]
        proc = subprocess.Popen(
            [sys.executable, "-c", _RESET_SIGNALS_THEN_EXEC, "-m", *argv],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal reaches pytest, which stops the server itself.
            start_new_session=True,
        )
        instance = Server(proc, " ".join([spec.name, app_ref, *options]), spec.port_line)
        instance.port = port
        try:
            instance._wait_ready(startup_timeout)
            yield instance
        finally:
            instance.stop()
    finally:
        if reserved is not None:
            reserved.close()


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


def _stat(pid: int) -> tuple[int, int] | None:
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


def _descendants(pid: int) -> set[tuple[int, int]]:
    children: dict[int, list[tuple[int, int]]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if entry.isdigit():
            stat = _stat(int(entry))
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
    stat = _stat(pid)
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


#: The fields of a record (``CloseContext.to_dict()``) that say how a connection ended: the
#: server tiers compare records on all of them.
CLOSE_FIELDS = (
    "state",
    "initiator",
    "code",
    "reason",
    "clean",
    "received",
    "sent",
    "requested",
    "received_then_sent",
    "sends_after_close",
    "error",
    "http_status",
    "messages_received",
    "messages_sent",
    "server",
    "unknown",
)


def close_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The :data:`CLOSE_FIELDS` of a record, after checking its clocks.

    An ended record has ``closed_at`` >= ``opened_at`` and a ``duration``; an open one has
    neither. A field the record lacks reads ``"<missing>"``, which no expectation equals.
    """
    if record["state"] in ("CLOSED", "REJECTED"):
        assert record["closed_at"] is not None and record["closed_at"] >= record["opened_at"], record
        assert record["duration"] is not None and record["duration"] >= 0, record
    else:
        assert record["closed_at"] is None and record["duration"] is None, record
    return {key: record.get(key, "<missing>") for key in CLOSE_FIELDS}


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
