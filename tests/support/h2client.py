"""A synchronous RFC 8441 client: WebSockets over HTTP/2 cleartext (h2c, prior knowledge).

Plain ``socket`` with a timeout on every wait, ``h2`` for the HTTP/2 framing and ``wsproto``'s
frame-level :class:`wsproto.connection.Connection` (no HTTP/1.1 handshake) for the WebSocket
frames, which travel in the DATA frames of one extended CONNECT stream:

1. TCP to ``127.0.0.1:port``, the client preface and SETTINGS (prior knowledge: no
   ``Upgrade: h2c``, no TLS).
2. The server's SETTINGS must come first and carry ``SETTINGS_ENABLE_CONNECT_PROTOCOL = 1``
   (RFC 8441 section 3); if the server answers with anything but an HTTP/2 SETTINGS frame, or
   does not announce the setting, :class:`ExtendedConnectNotSupported` (or its subclass
   :class:`H2cNotSupported`) is raised, with what the server sent.
3. HEADERS ``:method CONNECT``, ``:protocol websocket``, ``:scheme http``, ``:path``,
   ``:authority``, ``sec-websocket-version: 13`` (RFC 8441 section 5), no END_STREAM; a
   ``:status`` other than 200, or a RST_STREAM, raises :class:`ConnectRejected`.
4. WebSocket frames both ways; the client masks its frames (RFC 8441 keeps RFC 6455 framing).

The ending is up to the test: a close frame (:meth:`H2WebSocket.close`, which waits for the
server's close frame), RST_STREAM (:meth:`H2WebSocket.reset`), END_STREAM without a close frame
(:meth:`H2WebSocket.end_stream`) or the TCP connection closed (:meth:`H2WebSocket.drop`, FIN or
RST). :attr:`H2WebSocket.wire` keeps what the client saw, in order. Loopback only.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.events import Event as WSEvent

__all__ = [
    "DEFAULT_TIMEOUT",
    "ConnectRejected",
    "ExtendedConnectNotSupported",
    "H2WebSocket",
    "H2cNotSupported",
    "ServerClose",
    "WebSocketClosed",
    "server_settings",
]

DEFAULT_TIMEOUT = 5.0
_READ_SIZE = 65536
_FRAME_SETTINGS = 0x4


class ExtendedConnectNotSupported(Exception):
    """The server does not take WebSockets over HTTP/2 cleartext (RFC 8441).

    ``settings`` is what the server's SETTINGS frame said (setting code to value; empty when
    there was none); ``first_bytes`` the start of what it sent (empty when it sent nothing).
    """

    def __init__(self, message: str, *, settings: dict[int, int] | None = None, first_bytes: bytes = b"") -> None:
        super().__init__(message)
        self.settings: dict[int, int] = dict(settings or {})
        self.first_bytes = first_bytes


class H2cNotSupported(ExtendedConnectNotSupported):
    """The server does not speak HTTP/2 with prior knowledge on a cleartext connection: it
    answered the preface with something else (an HTTP/1.1 response, say), closed the
    connection, or sent nothing within the timeout."""


class ConnectRejected(Exception):
    """The extended CONNECT got a status other than 200, or the stream was reset."""

    def __init__(self, status: int | None, headers: list[tuple[bytes, bytes]], reset_code: int | None = None) -> None:
        what = f"HTTP {status}" if status is not None else f"RST_STREAM error code {reset_code}"
        super().__init__(f"extended CONNECT rejected: {what}")
        self.status = status
        self.headers = headers
        self.reset_code = reset_code


@dataclass(frozen=True)
class ServerClose:
    """The close frame the server sent: its code (``None`` for an empty payload) and reason."""

    code: int | None
    reason: str


class WebSocketClosed(Exception):
    """Raised by :meth:`H2WebSocket.receive` when the WebSocket ended instead of a message."""

    def __init__(self, close: ServerClose | None, how: str) -> None:
        super().__init__(f"websocket ended: {how}")
        self.close = close
        self.how = how


def _settings_payload(payload: bytes) -> dict[int, int]:
    return {code: value for code, value in struct.iter_unpack("!HI", payload[: len(payload) // 6 * 6])}


class H2WebSocket:
    """One WebSocket on one HTTP/2 connection; use :meth:`connect`, and as a context manager."""

    def __init__(self, sock: socket.socket, host: str, port: int, timeout: float) -> None:
        self.sock = sock
        self.host = host
        self.port = port
        self.timeout = timeout
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.ws = Connection(ConnectionType.CLIENT)
        self.stream_id = 0
        #: The server's settings, from its first SETTINGS frame (code to value).
        self.settings: dict[int, int] = {}
        self.status: int | None = None
        self.response_headers: list[tuple[bytes, bytes]] = []
        #: The close frame the server sent, once one arrived.
        self.server_close: ServerClose | None = None
        #: END_STREAM from the server on the WebSocket's stream.
        self.stream_ended = False
        #: The error code of a RST_STREAM from the server on the WebSocket's stream.
        self.reset_code: int | None = None
        #: The error code of a GOAWAY from the server.
        self.goaway_code: int | None = None
        #: The TCP connection ended (EOF or reset) while reading.
        self.eof = False
        #: What arrived, in order, as short strings: ``"SETTINGS ENABLE_CONNECT_PROTOCOL=1 ..."``,
        #: ``"HEADERS :status=200"``, ``"ws TEXT 'hi'"``, ``"ws CLOSE 4001 'bye'"``, ``"END_STREAM"``,
        #: ``"RST_STREAM 8"``, ``"GOAWAY 0"``, ``"EOF"``.
        self.wire: list[str] = []
        self._messages: list[str | bytes] = []
        self._text: list[str] = []
        self._binary: list[bytes] = []
        self._closed_socket = False

    # Opening.

    @classmethod
    def connect(
        cls,
        port: int,
        path: str,
        *,
        host: str = "127.0.0.1",
        timeout: float = DEFAULT_TIMEOUT,
        require_extended_connect: bool = True,
    ) -> H2WebSocket:
        """Connect, check the server's SETTINGS, and open the WebSocket on ``path`` (with query).

        With ``require_extended_connect=False`` the CONNECT is sent even when the server did not
        announce SETTINGS_ENABLE_CONNECT_PROTOCOL (to see what such a server does with it).
        """
        sock = socket.create_connection((host, port), timeout=timeout)
        client = cls(sock, host, port, timeout)
        try:
            try:
                client._start()
            except H2cNotSupported:
                raise
            except ExtendedConnectNotSupported:
                if require_extended_connect:
                    raise
            client._open(path)
        except BaseException:
            client.sock.close()
            raise
        return client

    def _start(self) -> None:
        self.h2.initiate_connection()
        self._flush()
        # The server's connection preface is a SETTINGS frame (RFC 9113 section 3.4). Read its
        # raw frame header before h2 parses it, to tell "not HTTP/2" from "HTTP/2 without 8441".
        first = self._read_at_least(9)
        if len(first) < 9 or first[3] != _FRAME_SETTINGS or first[5:9] != b"\0\0\0\0":
            how = "sent nothing" if not first else "did not answer with an HTTP/2 SETTINGS frame"
            if self.eof and not first:
                how = "closed the connection"
            raise H2cNotSupported(
                f"server at {self.host}:{self.port} does not speak h2c with prior knowledge: it {how}"
                f" (first bytes {first[:64]!r})",
                first_bytes=first,
            )
        length = int.from_bytes(first[:3], "big")
        data = first + self._read_at_least(9 + length - len(first)) if len(first) < 9 + length else first
        self.settings = _settings_payload(data[9 : 9 + length])
        self.wire.append("SETTINGS " + _describe_settings(self.settings))
        self._feed(data)
        if self.settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) != 1:
            raise ExtendedConnectNotSupported(
                f"server at {self.host}:{self.port} speaks h2c but does not announce "
                f"SETTINGS_ENABLE_CONNECT_PROTOCOL=1 (RFC 8441): SETTINGS {_describe_settings(self.settings)}",
                settings=self.settings,
                first_bytes=first,
            )

    def _open(self, path: str) -> None:
        self.stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            self.stream_id,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"http"),
                (b":path", path.encode("ascii")),
                (b":authority", f"{self.host}:{self.port}".encode("ascii")),
                (b"sec-websocket-version", b"13"),
            ],
        )
        self._flush()
        self._wait_for(lambda: self.status is not None or self.reset_code is not None, "the CONNECT response")
        if self.status != 200:
            raise ConnectRejected(self.status, self.response_headers, self.reset_code)

    # Context manager.

    def __enter__(self) -> H2WebSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.drop()

    # Sending.

    def send_text(self, text: str) -> None:
        self._send_ws(TextMessage(data=text))

    def send_bytes(self, data: bytes) -> None:
        self._send_ws(BytesMessage(data=data))

    def close(self, code: int = 1000, reason: str = "") -> ServerClose | None:
        """Send a close frame, then wait for the server's close frame (bounded by the timeout).

        Returns it, or ``None`` when the stream or connection ended without one.
        """
        self._send_ws(CloseConnection(code=code, reason=reason))
        self._wait_for(self._ended, "the server's close frame", allow_timeout=True)
        return self.server_close

    def reset(self, error_code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        """End the WebSocket's stream abruptly: RST_STREAM, no close frame. The TCP connection
        stays open (call :meth:`drop` to close it)."""
        self.h2.reset_stream(self.stream_id, error_code)
        self._flush()

    def end_stream(self) -> None:
        """Half-close the WebSocket's stream (empty DATA with END_STREAM), no close frame."""
        self.h2.end_stream(self.stream_id)
        self._flush()

    def drop(self, *, rst: bool = False) -> None:
        """Close the TCP connection, no GOAWAY: FIN, or RST (``SO_LINGER`` 0) with ``rst``."""
        if self._closed_socket:
            return
        self._closed_socket = True
        if rst:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    # Receiving.

    def receive(self) -> str | bytes:
        """The next message (answering pings on the way); :class:`WebSocketClosed` if it ended."""
        self._wait_for(lambda: bool(self._messages) or self._ended(), "a message")
        if self._messages:
            return self._messages.pop(0)
        raise WebSocketClosed(self.server_close, self._how_ended())

    def receive_text(self) -> str:
        message = self.receive()
        if not isinstance(message, str):
            raise AssertionError(f"expected a text message, got {message!r}")
        return message

    def wait_end(self, timeout: float | None = None) -> str:
        """Wait (bounded) until the server ends the WebSocket; say how (:meth:`_how_ended`), or
        ``"open"`` if it did not within the timeout. Messages that arrive are kept."""
        self._wait_for(self._ended, "the end", allow_timeout=True, timeout=timeout)
        return self._how_ended()

    def linger(self, seconds: float) -> list[str]:
        """Read (and answer) whatever arrives for ``seconds``, or until TCP EOF; return
        :attr:`wire`."""
        self._wait_for(lambda: False, "nothing", allow_timeout=True, timeout=seconds)
        return self.wire

    def _ended(self) -> bool:
        return self.server_close is not None or self.stream_ended or self.reset_code is not None or self.eof

    def _how_ended(self) -> str:
        if self.server_close is not None:
            return f"close {self.server_close.code} {self.server_close.reason!r}"
        if self.reset_code is not None:
            return f"RST_STREAM {self.reset_code}"
        if self.stream_ended:
            return "END_STREAM without a close frame"
        if self.eof:
            return "TCP closed without a close frame"
        return "open"

    # Plumbing.

    def _send_ws(self, event: WSEvent) -> None:
        data = self.ws.send(event)
        self.h2.send_data(self.stream_id, data)
        self._flush()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def _recv(self, deadline: float) -> bytes | None:
        """Up to one read of bytes; ``None`` at the deadline; ``b""`` at EOF or a reset."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(_READ_SIZE)
        except TimeoutError:  # socket.timeout is an alias of it from Python 3.10 on
            return None
        except ConnectionError:
            data = b""
        if not data:
            self.eof = True
            self.wire.append("EOF")
        return data

    def _read_at_least(self, count: int) -> bytes:
        deadline = time.monotonic() + self.timeout
        data = b""
        while len(data) < count:
            chunk = self._recv(deadline)
            if not chunk:
                break
            data += chunk
        return data

    def _wait_for(
        self, done: Callable[[], bool], what: str, *, allow_timeout: bool = False, timeout: float | None = None
    ) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not done():
            if self.eof:
                if allow_timeout:
                    return
                raise WebSocketClosed(self.server_close, f"TCP closed while waiting for {what}; saw {self.wire}")
            data = self._recv(deadline)
            if data is None:
                if allow_timeout:
                    return
                raise TimeoutError(f"no {what} within {self.timeout} s; saw {self.wire}")
            if data:
                self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.wire.append(f"h2 protocol error: {exc}")
            raise
        for event in events:
            self._on_h2_event(event)
        self._flush()

    def _on_h2_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            return  # described from the raw frame in _start; later ones are not of interest
        if isinstance(event, h2.events.ResponseReceived) and event.stream_id == self.stream_id:
            self.response_headers = [(bytes(name), bytes(value)) for name, value in event.headers]
            for name, value in self.response_headers:
                if name == b":status":
                    self.status = int(value)
            self.wire.append(f"HEADERS :status={self.status}")
        elif isinstance(event, h2.events.DataReceived) and event.stream_id == self.stream_id:
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if event.data:
                self.ws.receive_data(event.data)
                self._on_ws_events()
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id == self.stream_id:
            self.stream_ended = True
            self.wire.append("END_STREAM")
        elif isinstance(event, h2.events.StreamReset) and event.stream_id == self.stream_id:
            self.reset_code = int(event.error_code) if event.error_code is not None else 0
            self.wire.append(f"RST_STREAM {self.reset_code}")
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway_code = int(event.error_code) if event.error_code is not None else 0
            self.wire.append(f"GOAWAY {self.goaway_code}")

    def _on_ws_events(self) -> None:
        for event in self.ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._collect(event)
            elif isinstance(event, Ping):
                self.wire.append("ws PING")
                if self.ws.state == ConnectionState.OPEN:
                    self._send_ws(event.response())
            elif isinstance(event, CloseConnection):
                # wsproto reports an empty close payload as 1005 (RFC 6455 "no status").
                code = None if event.code == 1005 else int(event.code)
                self.server_close = ServerClose(code, event.reason or "")
                self.wire.append(f"ws CLOSE {code} {self.server_close.reason!r}")
                # wsproto answers a close it did not start; the client only answers here if the
                # server started the close (close() already sent ours).
                if self.ws.state == ConnectionState.REMOTE_CLOSING:
                    self._send_ws(event.response())

    def _collect(self, event: TextMessage | BytesMessage) -> None:
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if event.message_finished:
                self._messages.append("".join(self._text))
                self.wire.append(f"ws TEXT {self._messages[-1]!r}")
                self._text = []
        elif isinstance(event, BytesMessage):
            self._binary.append(bytes(event.data))
            if event.message_finished:
                self._messages.append(b"".join(self._binary))
                self.wire.append(f"ws BINARY {len(self._messages[-1])} bytes")
                self._binary = []


def _describe_settings(settings: dict[int, int]) -> str:
    parts = []
    for code, value in settings.items():
        try:
            name = h2.settings.SettingCodes(code).name
        except ValueError:
            name = f"0x{code:x}"
        parts.append(f"{name}={value}")
    return " ".join(parts) or "(empty)"


def server_settings(port: int, *, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT) -> dict[int, int]:
    """Send the h2c preface and return the server's first SETTINGS (code to value), without
    checking for RFC 8441; :class:`H2cNotSupported` if the server does not speak h2c."""
    sock = socket.create_connection((host, port), timeout=timeout)
    client = H2WebSocket(sock, host, port, timeout)
    try:
        try:
            client._start()
        except H2cNotSupported:
            raise
        except ExtendedConnectNotSupported as exc:
            return exc.settings
        return client.settings
    finally:
        client.drop()
