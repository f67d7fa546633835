"""Run real ASGI servers as subprocesses on 127.0.0.1 and read the records their apps write.

Six servers (:data:`SERVERS`): uvicorn with each of its WebSocket implementations, hypercorn,
daphne and granian, each launched with its own command line, the way its users launch it
(``docs/servers.md``, "Server commands"), on a port the OS chooses:

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
Twisted, hence daphne, then never installs its handler: docs/servers.md, "Method notes"). It is
stopped by its own PID on exit (SIGTERM, then SIGKILL), and so are the worker processes that
hypercorn and granian spawn, each by its own PID, should one outlive its parent.

A row that needs a server launched differently names a **profile** (:data:`PROFILES`):
``keepalive`` (each server's WebSocket keepalive ping, with a short pong timeout where the
server has one), ``trace`` (uvicorn at ``--log-level trace``) and ``http2`` (uvicorn's HTTP/2;
hypercorn and granian speak h2c as launched, daphne has no h2c); each :class:`ServerSpec`
maps a profile to the options it appends, and a server without such an option runs as usual.
:data:`SPEC25_SERVERS` are uvicorn patched to announce ASGI spec 2.5
(``tests/support/uvicorn_spec25.py``): :func:`run_server` runs them, the matrix (:data:`SERVERS`)
does not list them.

:func:`wait_for_records` polls the JSONL file written by ``tests/support/serverapp.py``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from asgi_ws_close._record import FIELDS
from tests.support.process import (
    POLL_INTERVAL,
    REPO_ROOT,
    STARTUP_TIMEOUT,
    UVICORN_PORT_LINE,
    ServerProcess,
    run_process,
)
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
    "record_fields",
    "wait_for_records",
]


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


#: The server profiles (:attr:`ServerSpec.profiles`), and what each is for.
PROFILES = {
    "keepalive": "the server's WebSocket keepalive ping on, with a short pong timeout where it has one",
    "trace": "uvicorn at --log-level trace (its message logger wraps the app's send and receive)",
    "http2": "HTTP/2 over cleartext (h2c) where the server needs a flag for it: uvicorn --http zttp --http2",
}

# Keepalive: a ping every 0.5 s, and the connection failed if no pong comes within 0.5 s.
_UVICORN_PROFILES = {
    "keepalive": ("--ws-ping-interval", "0.5", "--ws-ping-timeout", "0.5"),
    "trace": ("--log-level", "trace"),
    # uvicorn 0.55's HTTP/2 (the zttp package; HTTP/1.1 only without these flags).
    "http2": ("--http", "zttp", "--http2"),
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
            UVICORN_PORT_LINE,
            ("websockets",),
            _UVICORN_PROFILES,
        ),
        ServerSpec(
            "uvicorn-websockets-sansio",
            "uvicorn",
            _uvicorn("websockets-sansio"),
            UVICORN_PORT_LINE,
            ("websockets",),
            _UVICORN_PROFILES,
        ),
        ServerSpec(
            "uvicorn-wsproto", "uvicorn", _uvicorn("wsproto"), UVICORN_PORT_LINE, ("wsproto",), _UVICORN_PROFILES
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
            UVICORN_PORT_LINE,
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


#: A running server of this tier (the runner's :class:`~tests.support.process.ServerProcess`).
Server = ServerProcess


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
    port (granian: a reserved one), with the repository root as its cwd.

    ``profile`` (a name of :data:`PROFILES`) adds that server's options for it (none, if the
    server has no such option); ``extra_args`` are appended after them.
    """
    spec = server_spec(server)

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", *spec.argv(app_ref, port, profile), *extra_args]

    options = [*spec.argv(app_ref, 0, profile), *extra_args][len(spec.command(app_ref, 0)) :]
    with run_process(
        command,
        startup_timeout=startup_timeout,
        name=" ".join([spec.name, app_ref, *options]),
        port_line=spec.port_line,
        env={RECORDS_ENV: str(records_path)},
    ) as instance:
        yield instance


#: The fields of a record (``CloseContext.to_dict()``) that say how a connection ended: the
#: server tiers compare records on all of them. Derived from the record's declaration: every
#: field but the clocks, and ``outcome`` and ``http_version``, which the tiers that need them
#: compare on their own.
CLOSE_FIELDS = tuple(
    name for name in FIELDS if name not in {"opened_at", "closed_at", "duration", "outcome", "http_version"}
)


#: What a record's :data:`CLOSE_FIELDS` hold when nothing set them.
_UNSET_FIELDS: dict[str, Any] = {
    "state": "CLOSED",
    "initiator": None,
    "code": None,
    "reason": "",
    "clean": None,
    "received": None,
    "sent": None,
    "requested": None,
    "received_then_sent": None,
    "sends_after_close": 0,
    "error": None,
    "http_status": None,
    "messages_received": None,
    "messages_sent": None,
    "server": None,
    "unknown": [],
}


def record_fields(**fields: Any) -> dict[str, Any]:
    """An expected record's :data:`CLOSE_FIELDS`: ``fields``, and what nothing set for the rest
    (state ``CLOSED``, reason ``""``, no sends after the close, nothing unknown, else ``None``)."""
    unknown = set(fields) - set(CLOSE_FIELDS)
    if unknown:
        raise TypeError(f"not close fields: {sorted(unknown)}")
    return {**_UNSET_FIELDS, **fields}


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
