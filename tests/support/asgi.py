"""In-process ASGI pieces shared by the pure and in-process tiers: the connect message, the
outcomes a record may have, an echo app, and :func:`drive`, a scripted server for one connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asgi_ws_close._types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONNECT", "OUTCOMES", "drive", "echo", "echo_app", "websocket_scope"]

CONNECT: Message = {"type": "websocket.connect"}

#: Every outcome a record may have, spelled out (test_integrations_prometheus checks that
#: asgi_ws_close's ``Outcome`` literal has exactly these).
OUTCOMES = frozenset(
    {
        "client_closed",
        "app_closed",
        "rejected",
        "app_error",
        "dropped",
        "server_timeout",
        "server_shutdown",
        "server_error",
    }
)


def websocket_scope(path: str = "/ws", **extra: Any) -> Scope:
    """A WebSocket scope for ``path``, with no headers, and ``extra`` keys."""
    return {"type": "websocket", "path": path, "query_string": b"", "headers": [], **extra}


def echo_app(close_code: int | None = None, reason: str = "") -> ASGIApp:
    """An app that accepts and echoes text until the disconnect; with ``close_code``, it also
    closes with that code and ``reason`` after echoing "close"."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text")})
            if close_code is not None and message.get("text") == "close":
                await send({"type": "websocket.close", "code": close_code, "reason": reason})

    return app


#: The plain echo app.
echo = echo_app()


async def drive(app: ASGIApp, inbound: list[Message], scope: Mapping[str, Any] | None = None) -> list[Message]:
    """Run ``app`` on one connection whose ``receive`` returns the ``inbound`` messages in turn
    (an ``IndexError`` past the last); return what it sent."""
    pending = list(inbound)
    outbound: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0)

    async def send(message: Message) -> None:
        outbound.append(message)

    await app(dict(scope) if scope is not None else websocket_scope(), receive, send)
    return outbound
