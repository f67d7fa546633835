"""ASGI type aliases, so that the package needs no framework at run time.

Same shapes as ``starlette.types``; a Starlette or FastAPI app is an :data:`ASGIApp`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

__all__ = ["ASGIApp", "Initiator", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Who started the end of a connection; ``None`` when the transport was lost and nobody did.
Initiator = Literal["client", "app", "server"]
