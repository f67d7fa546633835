"""A raw-socket RFC 6455 client, for what a well-behaved client library will not send.

Plain ``socket``, masked frames, byte-exact close payloads (empty, 1 byte, reserved or
invalid codes, invalid UTF-8), and abrupt ends: TCP FIN without a close frame, or TCP RST
(``SO_LINGER`` 0). Every socket operation has a bounded timeout. Loopback only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

__all__ = [
    "Ending",
    "Frame",
    "HandshakeRejected",
    "RawWebSocket",
    "Watch",
    "close_payload",
    "send_upgrade_request",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFAULT_TIMEOUT = 5.0
_MAX_HANDSHAKE = 65536


def send_upgrade_request(
    port: int, path: str, *, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT
) -> tuple[socket.socket, bytes]:
    """Open a TCP connection and send the upgrade request only; return the socket and the key.

    For a client that leaves during the handshake: the response is not read.
    """
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        key = base64.b64encode(os.urandom(16))
        request = (
            f"GET {path} HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode('ascii')}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "\r\n"
        ).encode("ascii")
        sock.sendall(request)
    except BaseException:
        sock.close()
        raise
    return sock, key


def close_payload(code: int, reason: bytes = b"") -> bytes:
    """A close frame payload: the 2-byte code, big-endian, then the reason bytes as given."""
    return struct.pack("!H", code) + reason


class HandshakeRejected(Exception):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status: int, head: bytes) -> None:
        super().__init__(f"handshake rejected: HTTP {status}")
        self.status = status
        self.head = head


@dataclass(frozen=True)
class Frame:
    fin: bool
    opcode: int
    payload: bytes


@dataclass(frozen=True)
class Ending:
    """How the server ended the connection, as the client saw it."""

    kind: Literal["close", "eof", "reset", "timeout"]
    #: The close frame's payload, for kind == "close".
    payload: bytes = b""

    @property
    def code(self) -> int | None:
        """The close frame's code; None for an empty payload or no close frame."""
        if self.kind != "close" or len(self.payload) < 2:
            return None
        code: int = struct.unpack("!H", self.payload[:2])[0]
        return code

    @property
    def reason(self) -> str:
        return self.payload[2:].decode("utf-8", "replace")

    def describe(self) -> str:
        """What the client saw, in words that do not depend on timing.

        TCP FIN and RST both read "no close frame": which of them a server's teardown shows
        varies from run to run (docs/servers.md, "Method notes").
        """
        if self.kind == "close":
            if not self.payload:
                return "close, empty payload"
            if len(self.payload) == 1:
                return "close, 1-byte payload"
            return f"close {self.code} {self.reason!r}"
        if self.kind == "timeout":
            return "no close frame, connection left open"
        return "no close frame"


@dataclass(frozen=True)
class Watch:
    """What a silent client (:meth:`RawWebSocket.watch`) saw: it answered nothing, not even
    pings, for a bounded time."""

    #: Pings the server sent (none answered), and other non-close frames.
    pings: int
    others: int
    #: The close frame, or how the watch ended without one ("eof", "reset", "timeout").
    ending: Ending
    #: After a close frame: whether the server closed TCP (FIN or RST) within the bound.
    tcp_closed: bool
    #: The watch's bound and, after a close frame, the bound on the TCP close.
    seconds: float
    after_close: float

    def describe(self) -> str:
        """What the client saw, in words that do not depend on timing (how many pings came
        depends on when the server's timer fires: only whether any came is said)."""
        parts = ["pinged, pings unanswered" if self.pings else "no ping"]
        if self.others:
            parts.append("other frames too")
        if self.ending.kind == "close":
            then = "then TCP closed" if self.tcp_closed else f"TCP left open ({self.after_close:g} s)"
            parts.append(f"{self.ending.describe()} (not answered), {then}")
        elif self.ending.kind == "timeout":
            parts.append(f"no close frame, connection left open ({self.seconds:g} s)")
        else:
            parts.append("no close frame, TCP closed")
        return "; ".join(parts)


class RawWebSocket:
    """One client connection; use :meth:`connect`, and as a context manager."""

    def __init__(self, sock: socket.socket, buffered: bytes = b"") -> None:
        self.sock = sock
        self._buffer = bytearray(buffered)

    @classmethod
    def connect(
        cls, port: int, path: str, *, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT
    ) -> RawWebSocket:
        """Open a TCP connection and do the opening handshake for ``path`` (with query)."""
        sock, key = send_upgrade_request(port, path, host=host, timeout=timeout)
        try:
            head, rest = _read_head(sock)
            status_line = head.split(b"\r\n", 1)[0]
            parts = status_line.split(b" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if status != 101:
                raise HandshakeRejected(status, head)
            expected = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            headers = _parse_headers(head)
            if headers.get(b"sec-websocket-accept") != expected:
                raise HandshakeRejected(status, head)
        except BaseException:
            sock.close()
            raise
        return cls(sock, rest)

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Sending.

    def send_frame(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        """Send one masked frame, exactly as given (no validation of opcode or payload)."""
        first = (0x80 if fin else 0) | (opcode & 0x0F)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", first, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, length)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + _apply_mask(payload, mask))

    def send_text(self, text: str) -> None:
        self.send_frame(OP_TEXT, text.encode("utf-8"))

    def send_close(self, payload: bytes) -> None:
        """Send a close frame whose payload is exactly ``payload`` (see :func:`close_payload`)."""
        self.send_frame(OP_CLOSE, payload)

    # Receiving.

    def recv_frame(self) -> Frame:
        """Read one frame. Raises EOFError on TCP EOF, OSError on a reset or timeout."""
        first, second = self._recv_exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._recv_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._recv_exact(8))
        mask = self._recv_exact(4) if second & 0x80 else b""
        payload = self._recv_exact(length)
        if mask:
            payload = _apply_mask(payload, mask)
        return Frame(fin=bool(first & 0x80), opcode=first & 0x0F, payload=payload)

    def recv_text(self, *, answer_pings: bool = True) -> str:
        """Read the next text message (one unfragmented frame), answering pings on the way
        (skipping them, unanswered, with ``answer_pings=False``)."""
        while True:
            frame = self.recv_frame()
            if frame.opcode == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, frame.payload)
                continue
            if frame.opcode != OP_TEXT or not frame.fin:
                raise AssertionError(f"expected a text frame, got {frame!r}")
            return frame.payload.decode("utf-8")

    def read_ending(self) -> Ending:
        """Read until the server's close frame, TCP EOF, a reset, or the socket timeout."""
        try:
            while True:
                frame = self.recv_frame()
                if frame.opcode == OP_CLOSE:
                    return Ending("close", frame.payload)
        except EOFError:
            return Ending("eof")
        except ConnectionResetError:
            return Ending("reset")
        except TimeoutError:
            return Ending("timeout")

    def watch(self, seconds: float, *, after_close: float = DEFAULT_TIMEOUT) -> Watch:
        """Stay silent, sending nothing (no pong, no close), for at most ``seconds``; read what
        the server sends until its close frame, TCP EOF or a reset. After a close frame, wait
        at most ``after_close`` seconds more for the server to close TCP.

        Only this method ever leaves a ping unanswered: :meth:`recv_text` answers them.
        """
        pings = others = 0
        deadline = time.monotonic() + seconds
        saved = self.sock.gettimeout()
        try:
            ending: Ending | None = None
            while ending is None:
                try:
                    frame = self.recv_frame_by(deadline)
                except EOFError:
                    ending = Ending("eof")
                except ConnectionResetError:
                    ending = Ending("reset")
                else:
                    if frame is None:
                        ending = Ending("timeout")
                    elif frame.opcode == OP_PING:
                        pings += 1
                    elif frame.opcode == OP_CLOSE:
                        ending = Ending("close", frame.payload)
                    else:
                        others += 1
            tcp_closed = ending.kind in ("eof", "reset")
            if ending.kind == "close":
                tcp_closed = self._wait_tcp_close(time.monotonic() + after_close)
        finally:
            self.sock.settimeout(saved)
        return Watch(pings, others, ending, tcp_closed, seconds, after_close)

    def recv_frame_by(self, deadline: float) -> Frame | None:
        """Read one frame by ``deadline`` (a ``time.monotonic()`` value); None if none came.

        Raises EOFError on TCP EOF, ConnectionResetError on a reset.
        """
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self.sock.settimeout(remaining)
        try:
            return self.recv_frame()
        except TimeoutError:
            return None

    def _wait_tcp_close(self, deadline: float) -> bool:
        # After the server's close frame: True once TCP EOF or a reset comes by the deadline.
        try:
            while self.recv_frame_by(deadline) is not None:
                pass
        except (EOFError, ConnectionResetError):
            return True
        return False

    # Ending.

    def drop_fin(self) -> None:
        """End the TCP connection with FIN, without a close frame."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        finally:
            self.sock.close()

    def drop_rst(self) -> None:
        """Abort the TCP connection with RST (SO_LINGER 0), without a close frame."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def _recv_exact(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("TCP EOF")
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise HandshakeRejected(0, data)
        data += chunk
        if len(data) > _MAX_HANDSHAKE:
            raise HandshakeRejected(0, data[:200])
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _parse_headers(head: bytes) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return headers


def _apply_mask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(data), "big")
