"""The two conversations every framework app is driven through, over a real socket.

Every app echoes text, and closes with 4003 "nope" when it receives "close". The client
is the ``websockets`` sync client; every wait is bounded.
"""

from __future__ import annotations

import base64
import os
import socket
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.frameworkapps.server import Server

__all__ = ["TIMEOUT", "app_closes", "assert_closed", "client_closes", "client_drops", "tagged"]

TIMEOUT = 10.0


def tagged(path: str, tag: str) -> str:
    """``path`` with the ``tag`` query parameter that names the connection in the app's lines."""
    return f"{path}{'&' if '?' in path else '?'}tag={tag}"


def client_closes(server: Server, path: str, tag: str, code: int = 4001, reason: str = "bye") -> None:
    """Connect, exchange one message, then close with ``code`` and ``reason``."""
    with connect(server.url(tagged(path, tag)), open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "hi"
        ws.close(code, reason)


def app_closes(server: Server, path: str, tag: str) -> tuple[int | None, str | None]:
    """Ask the app to close; return the close code and reason the client received."""
    with connect(server.url(tagged(path, tag)), open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.send("close")
        try:
            ws.recv(timeout=TIMEOUT)
        except ConnectionClosed:
            pass
        else:
            raise AssertionError("the app did not close the connection")
        return ws.close_code, ws.close_reason


def client_drops(server: Server, path: str, tag: str) -> None:
    """Complete the handshake by hand, then close the TCP connection without a close frame."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {tagged(path, tag)} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            assert chunk, f"the server closed during the handshake: {response!r}"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response


def assert_closed(record: dict[str, Any], *, initiator: str | None, code: int, reason: str, clean: bool) -> None:
    """Check the fields of a ``CloseContext.to_dict()`` that say how the connection ended."""
    assert record["state"] == "CLOSED", record
    assert (record["initiator"], record["code"], record["reason"], record["clean"]) == (
        initiator,
        code,
        reason,
        clean,
    ), record
