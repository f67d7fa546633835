"""Child process: the load generator, on raw sockets, driven by JSON lines on stdin.

``python -m benchmarks._client`` reads one command per line and answers one JSON line each::

    {"op": "ws_echo", "port": P, "query": Q, "count": N, "size": 1024, "window": W} -> {"seconds": ...}
    {"op": "ws_churn", "port": P, "query": Q, "count": N, "concurrency": C} -> {"seconds": ...}
    {"op": "http", "port": P, "query": Q, "count": N, "concurrency": C}     -> {"seconds": ...}

``Q`` is the query string of every request (``_apps.SideBySide`` picks the variant by it).

A failure answers ``{"error": "..."}``. The client is hand-written on blocking sockets (frames
pre-built and pre-masked, no parsing beyond what is needed) so that it costs far less CPU per
message than the server: the server, not the client, is what limits the rate being measured.
The same process and code serve both variants of every comparison.
"""

from __future__ import annotations

import json
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

TIMEOUT = 60.0  # per blocking socket operation; a stuck server fails the run instead of hanging
_MASK = b"\x37\xfa\x21\x3d"
_HANDSHAKE = (
    "GET /ws?{query} HTTP/1.1\r\n"
    "Host: 127.0.0.1:{port}\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n"
)
_HTTP_REQUEST = "GET /?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)")
_OP_BINARY = 0x2
_OP_CLOSE = 0x8


def _header(opcode: int, length: int, masked: bool) -> bytes:
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return bytes([0x80 | opcode, mask_bit | length])
    if length < 1 << 16:
        return bytes([0x80 | opcode, mask_bit | 126]) + length.to_bytes(2, "big")
    return bytes([0x80 | opcode, mask_bit | 127]) + length.to_bytes(8, "big")


def _client_frame(opcode: int, payload: bytes) -> bytes:
    """A complete masked frame, as clients must send (RFC 6455 5.3)."""
    masked = bytes(byte ^ _MASK[i % 4] for i, byte in enumerate(payload))
    return _header(opcode, len(payload), masked=True) + _MASK + masked


_CLOSE_FRAME = _client_frame(_OP_CLOSE, (1000).to_bytes(2, "big"))


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _handshake(port: int, query: str) -> tuple[socket.socket, bytes]:
    """Open a WebSocket connection; return it and any bytes read past the 101 response."""
    sock = _connect(port)
    sock.sendall(_HANDSHAKE.format(port=port, query=query).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed during the handshake: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"handshake refused: {head!r}")
    return sock, rest


def _close(sock: socket.socket, pending: bytes) -> None:
    """Close from the client side, then wait for the server's close frame and for its EOF.

    Waiting for the server to close TCP first leaves TIME_WAIT on the server's side, so that
    thousands of connections do not exhaust the client's ephemeral ports.
    """
    try:
        sock.sendall(_CLOSE_FRAME)
        buf = pending
        while chunk := sock.recv(65536):
            buf += chunk
    finally:
        sock.close()
    if buf[:1] != bytes([0x80 | _OP_CLOSE]):
        raise ConnectionError(f"expected the server's close frame, got {buf[:16]!r}")


def ws_echo(port: int, query: str, count: int, size: int, window: int) -> float:
    """Send ``count`` binary messages of ``size`` bytes on one connection, ``window`` at a time.

    Each window is written at once and all its echoes are read before the next one goes: the
    server always gets the same batches, so its work per message does not depend on how the
    scheduler happened to interleave the two processes (unbounded pipelining lets batches grow
    when the server is starved, which makes its per-message cost vary by tens of percent).
    The time runs from the first write to the last echo; every echo is checked.
    """
    payload = random.Random(size).randbytes(size)
    frame = _client_frame(_OP_BINARY, payload)
    reply = _header(_OP_BINARY, size, masked=False) + payload
    sock, pending = _handshake(port, query)
    if pending:
        raise ConnectionError(f"unexpected bytes after the handshake: {pending[:16]!r}")
    windows = [window] * (count // window) + ([count % window] if count % window else [])
    blobs = {n: frame * n for n in set(windows)}
    replies = {n: reply * n for n in set(windows)}
    buf = bytearray(window * len(reply))
    view = memoryview(buf)
    mismatches = 0
    started = time.perf_counter()
    for n in windows:
        sock.sendall(blobs[n])
        expected = n * len(reply)
        received = 0
        while received < expected:
            got = sock.recv_into(view[received:expected])
            if not got:
                raise ConnectionError(f"connection closed after {received} of {expected} bytes")
            received += got
        # Cheap enough to do inside the clock (a memcmp), and it catches a wrong echo at once.
        mismatches += (buf if expected == len(buf) else buf[:expected]) != replies[n]
    elapsed = time.perf_counter() - started
    view.release()
    if mismatches:
        raise AssertionError(f"{mismatches} windows of echoes differ from the messages sent")
    _close(sock, b"")
    return elapsed


def _split(count: int, concurrency: int) -> list[int]:
    share, extra = divmod(count, concurrency)
    return [share + (1 if i < extra else 0) for i in range(concurrency)]


def _in_threads(work: Callable[[int], None], count: int, concurrency: int) -> float:
    """Run ``work(n)`` in ``concurrency`` threads that share ``count``; return the wall time."""
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,), daemon=True) for n in _split(count, concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * max(count, 1))
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


def ws_churn(port: int, query: str, count: int, concurrency: int) -> float:
    """Open and close ``count`` connections (handshake, close handshake, TCP close)."""

    def work(n: int) -> None:
        for _ in range(n):
            sock, pending = _handshake(port, query)
            _close(sock, pending)

    return _in_threads(work, count, concurrency)


def http(port: int, query: str, count: int, concurrency: int) -> float:
    """Make ``count`` GET / requests over ``concurrency`` keep-alive connections."""
    request = _HTTP_REQUEST.format(query=query).encode()

    def work(n: int) -> None:
        sock = _connect(port)
        buf = b""
        try:
            for _ in range(n):
                sock.sendall(request)
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end >= 0:
                        head = buf[:end]
                        match = _CONTENT_LENGTH.search(head)
                        length = int(match.group(1)) if match else 0
                        if len(buf) >= end + 4 + length:
                            buf = buf[end + 4 + length :]
                            break
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("the server closed the keep-alive connection")
                    buf += chunk
                if not head.startswith(b"HTTP/1.1 200"):
                    raise ConnectionError(f"unexpected response: {head!r}")
        finally:
            sock.close()

    return _in_threads(work, count, concurrency)


def _run(command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    port = int(command["port"])
    query = str(command["query"])
    count = int(command["count"])
    if op == "ws_echo":
        return {"seconds": ws_echo(port, query, count, int(command["size"]), int(command["window"]))}
    if op == "ws_churn":
        return {"seconds": ws_churn(port, query, count, int(command["concurrency"]))}
    if op == "http":
        return {"seconds": http(port, query, count, int(command["concurrency"]))}
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    for line in sys.stdin:
        try:
            answer = _run(json.loads(line))
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
