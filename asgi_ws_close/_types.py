"""ASGI type aliases, so that the package needs no framework at run time.

Same shapes as ``starlette.types``; a Starlette or FastAPI app is an `ASGIApp`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

__all__ = ["ASGIApp", "Initiator", "Message", "Outcome", "Receive", "Scope", "Send", "WebSocketObserver"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Who started the end of a connection; ``None`` when the transport was lost and nobody did.
Initiator = Literal["client", "app", "server"]

#: How a connection ended, in one low-cardinality word (what dashboards group by):
#: ``client_closed`` the client's close frame came first; ``app_closed`` the app closed (or
#: returned after accept); ``rejected`` the app refused the handshake; ``app_error`` the app
#: raised while the connection was open or opening; ``dropped`` the transport was lost with
#: no close frame; ``server_timeout`` the server closed a peer that stopped answering its
#: keepalive pings; ``server_shutdown`` the server closed it at shutdown (or cancelled the
#: app); ``server_error`` the server failed it on its own for another reason (a protocol
#: error, a message too big).
Outcome = Literal[
    "client_closed",
    "app_closed",
    "rejected",
    "app_error",
    "dropped",
    "server_timeout",
    "server_shutdown",
    "server_error",
]


class WebSocketObserver:
    """A pure ASGI wrapper that acts on `websocket` scopes only: every other scope passes
    straight through to `app`. Subclasses define `websocket(scope, receive, send)`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        await self.websocket(scope, receive, send)

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError  # pragma: no cover - each subclass defines it
