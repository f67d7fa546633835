"""The app and the client side of the observability real-server tests.

Server side: ``python -m uvicorn --factory tests.support.obsapp:create_app`` serves a pure ASGI app
wrapped in :class:`WebSocketCloseMiddleware` with the ready logging hook and the Prometheus
integration, as users wire them, and prometheus-client's own ASGI app at ``/metrics``
(with a :class:`~prometheus_client.multiprocess.MultiProcessCollector` when
``PROMETHEUS_MULTIPROC_DIR`` is set). Each worker process writes, in the directory named by
``ASGI_WS_CLOSE_OBS_DIR``:

* ``ready-<pid>``, once its app exists;
* ``text-<pid>.log``: the ``asgi_ws_close`` logger through a plain ``%(message)s`` formatter,
  the worst case for log injection;
* ``json-<pid>.jsonl``: the same records as JSON (``ensure_ascii=False``, so that JSON's own
  escaping hides nothing), with the ``ws_close`` extra.

WebSocket routes: ``/c/<anything>`` accepts and waits for the end (the many-clients test);
``/pid`` accepts, sends the worker's PID, then waits for the end; ``/close?code=&reason=``
sends the PID then closes with that code and reason; ``/raise`` sends the PID then raises;
``/reject`` closes before accept.

Client side (imported by the tests, never by the server): :func:`run_uvicorn`, an asyncio
raw-socket client (:func:`raw_close`) for close frames no client library will send, and
:func:`scrape` with :func:`closes_by_labels` to read ``/metrics`` over HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.client
import json
import logging
import os
import struct
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from asgi_ws_close import WebSocketCloseMiddleware
from asgi_ws_close._types import ASGIApp, Receive, Scope, Send
from tests.support.process import ServerProcess, running, wait_until

__all__ = [
    "OBS_DIR_ENV",
    "UvicornProcess",
    "closes_by_labels",
    "create_app",
    "raw_close",
    "read_json_lines",
    "read_text_lines",
    "run_uvicorn",
    "sample_value",
    "scrape",
    "wait_until",
]

#: Environment variable naming the directory of the workers' log and ready files.
OBS_DIR_ENV = "ASGI_WS_CLOSE_OBS_DIR"

#: The app's own close codes, kept as labels of their own by the Prometheus integration.
KEEP_CODES = frozenset({4001})

STARTUP_TIMEOUT = 30.0
CLIENT_TIMEOUT = 20.0


# Server side.


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "level": record.levelname,
            "message": record.getMessage(),
            "ws_close": getattr(record, "ws_close", None),
        }
        return json.dumps(line, ensure_ascii=False, sort_keys=True)


def _setup_logging(directory: Path) -> None:
    pid = os.getpid()
    logger = logging.getLogger("asgi_ws_close")
    logger.setLevel(logging.INFO)
    # Keep the lines out of uvicorn's output, which the tests drain but do not read.
    logger.propagate = False
    text = logging.FileHandler(directory / f"text-{pid}.log", encoding="utf-8")
    text.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    structured = logging.FileHandler(directory / f"json-{pid}.jsonl", encoding="utf-8")
    structured.setFormatter(_JsonFormatter())
    logger.addHandler(text)
    logger.addHandler(structured)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def _websocket(scope: Scope, receive: Receive, send: Send) -> None:
    path: str = scope["path"]
    await receive()  # websocket.connect
    if path == "/reject":
        await send({"type": "websocket.close", "code": 4001})
        return
    await send({"type": "websocket.accept"})
    if path.startswith("/c/"):
        await _until_disconnect(receive)
        return
    await send({"type": "websocket.send", "text": str(os.getpid())})
    if path == "/close":
        query = parse_qs(scope["query_string"].decode("latin-1"))
        code = int(query.get("code", ["1000"])[0])
        reason = query.get("reason", [""])[0]
        await send({"type": "websocket.close", "code": code, "reason": reason})
        await _until_disconnect(receive)
    elif path == "/raise":
        raise RuntimeError("boom\n\x1b[31mforged line")
    else:
        await _until_disconnect(receive)


def create_app() -> ASGIApp:
    """Build the app of one worker process (uvicorn ``--factory``)."""
    # Imported here: PROMETHEUS_MULTIPROC_DIR must be in the environment before
    # prometheus_client is first imported in the worker, and the tests import this module.
    from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app
    from prometheus_client.multiprocess import MultiProcessCollector

    from asgi_ws_close.integrations.logging import log_close
    from asgi_ws_close.integrations.prometheus import PrometheusCloseMetrics

    directory = Path(os.environ[OBS_DIR_ENV])
    _setup_logging(directory)
    metrics = PrometheusCloseMetrics(keep_codes=KEEP_CODES)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # prometheus-client's multiprocess recipe: a fresh registry that reads every
        # worker's files, for exposition only.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    metrics_app = make_asgi_app(registry)

    async def router(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await _websocket(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/metrics":
            await metrics_app(scope, receive, send)
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    app = metrics.middleware(WebSocketCloseMiddleware(router, on_close=[log_close, metrics.on_close]))
    (directory / f"ready-{os.getpid()}").touch()
    return app


# Client side: the server process.


class UvicornProcess(ServerProcess):
    """The obs app under uvicorn: its port, its output, the directory its workers write to."""

    def __init__(self, command: list[str], directory: Path, workers: int, env: dict[str, str | None]) -> None:
        super().__init__(command, name="uvicorn tests.support.obsapp:create_app", env=env)
        self.directory = directory
        self.workers = workers

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        # Ready: the port is known and every worker has built its app.
        super().wait_ready(timeout)
        wait_until(
            lambda: len(list(self.directory.glob("ready-*"))) >= self.workers,
            timeout,
            lambda: f"{self.workers} workers not ready; {self.describe()}",
        )
        self.note_workers()


@contextmanager
def run_uvicorn(
    directory: Path, *, workers: int = 1, multiproc_dir: Path | None = None, ws: str = "auto"
) -> Iterator[UvicornProcess]:
    """Run ``uvicorn --factory tests.support.obsapp:create_app`` on 127.0.0.1, an OS-chosen port."""
    directory.mkdir(parents=True, exist_ok=True)
    env: dict[str, str | None] = {key: None for key in os.environ if key.lower() == "prometheus_multiproc_dir"}
    env[OBS_DIR_ENV] = str(directory)
    if multiproc_dir is not None:
        multiproc_dir.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "tests.support.obsapp:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--ws",
        ws,
        "--lifespan",
        "off",
        "--no-access-log",
        "--log-level",
        "info",
        "--timeout-graceful-shutdown",
        "5",
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    with running(UvicornProcess(command, directory, workers, env), STARTUP_TIMEOUT) as server:
        yield server


# Client side: reading what the workers wrote.


def read_text_lines(directory: Path) -> list[str]:
    """Every complete line of every worker's plain-text log."""
    lines: list[str] = []
    for path in sorted(directory.glob("text-*.log")):
        text = path.read_text(encoding="utf-8")
        lines += [line[:-1] for line in text.splitlines(keepends=True) if line.endswith("\n")]
    return lines


def read_json_lines(directory: Path) -> list[dict[str, Any]]:
    """Every complete line of every worker's JSON log, parsed."""
    lines: list[dict[str, Any]] = []
    for path in sorted(directory.glob("json-*.jsonl")):
        text = path.read_text(encoding="utf-8")
        lines += [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
    return lines


# Client side: Prometheus over HTTP.


def scrape(port: int) -> str:
    """GET /metrics (plain http.client: no proxy from the environment applies)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read().decode("utf-8")
        assert response.status == 200, (response.status, body)
        return body
    finally:
        connection.close()


def closes_by_labels(
    exposition: str, name: str = "websocket_server_closes_total"
) -> Counter[tuple[str, str, str, str]]:
    """The close counter's samples, as {(initiator, code, clean, outcome): value} (zeros left out).

    A sample with any other label set fails: the tuple is the counter's whole label set.
    """
    from prometheus_client.parser import text_string_to_metric_families

    counts: Counter[tuple[str, str, str, str]] = Counter()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.value:
                labels = sample.labels
                assert set(labels) == {"initiator", "code", "clean", "outcome"}, labels
                counts[(labels["initiator"], labels["code"], labels["clean"], labels["outcome"])] += int(sample.value)
    return counts


def sample_value(exposition: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = labels or {}
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                total += sample.value
    return total


# Client side: a raw RFC 6455 client on asyncio.


def _mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    repeated = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")


def _frame(opcode: int, payload: bytes) -> bytes:
    # Close payloads are below 126 bytes, except for the deliberately oversized ones.
    length = len(payload)
    header = (
        struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        if length < 126
        else struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    )
    key = os.urandom(4)
    return header + key + _mask(payload, key)


async def _read_frames_until_close(reader: asyncio.StreamReader) -> bytes | None:
    while True:
        try:
            head = await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            return None  # TCP EOF without a close frame
        length = head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        payload = await reader.readexactly(length)
        if head[0] & 0x0F == 0x8:
            return payload


async def raw_close(port: int, path: str, payload: bytes, *, timeout: float = CLIENT_TIMEOUT) -> bytes | None:
    """Connect, send one close frame with exactly ``payload``, return the server's close payload.

    Returns ``None`` if the server ended the TCP connection without a close frame.
    """

    async def run() -> bytes | None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            key = base64.b64encode(os.urandom(16))
            writer.write(
                (
                    f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode('ascii')}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode("ascii")
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise AssertionError(f"handshake refused: {head!r}")
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            assert accept in head, head
            writer.write(_frame(0x8, payload))
            await writer.drain()
            return await _read_frames_until_close(reader)
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()

    return await asyncio.wait_for(run(), timeout)
