"""The read paths: the scope key, its accessor, and the per-task context variable."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from ._record import CloseContext
from .exceptions import MiddlewareNotInstalled

__all__ = ["SCOPE_KEY", "current_close_context", "get_close_context"]

#: The ASGI scope key under which the middleware stores each connection's CloseContext.
SCOPE_KEY = "asgi_ws_close"

# Middleware: set for the app's task of each websocket connection, reset with its token.
_current: ContextVar[CloseContext | None] = ContextVar("asgi_ws_close.current", default=None)

_HOW_TO_ADD = (
    "add the middleware: app.add_middleware(WebSocketCloseMiddleware) for Starlette/FastAPI, "
    "Middleware(WebSocketCloseMiddleware) in middleware=[...], or "
    "app = WebSocketCloseMiddleware(app) for any ASGI app "
    "(from asgi_ws_close import WebSocketCloseMiddleware)"
)


def get_close_context(conn: Any) -> CloseContext:
    """Return the `CloseContext` of a WebSocket connection.

    Args:
        conn: A Starlette/FastAPI ``WebSocket`` (anything with a ``.scope``) or a raw ASGI
            scope mapping.

    Raises:
        MiddlewareNotInstalled: (a `LookupError`) the WebSocket scope has no context:
            `WebSocketCloseMiddleware` does not wrap the app.
        ValueError: the scope is not a ``websocket`` one (an HTTP request has no close
            context, with or without the middleware).
        TypeError: ``conn`` is neither a connection nor a scope.
    """
    scope = conn if isinstance(conn, Mapping) else getattr(conn, "scope", None)
    if not isinstance(scope, Mapping):
        raise TypeError(f"get_close_context() takes a WebSocket or an ASGI scope, not {type(conn).__name__}")
    context = scope.get(SCOPE_KEY)
    if isinstance(context, CloseContext):
        return context
    scope_type = scope.get("type")
    if scope_type != "websocket":
        # Not a missing middleware: the middleware passes other scopes through untouched.
        raise ValueError(
            f"get_close_context() is for WebSocket connections, and this is a {scope_type!r} scope: "
            "close contexts exist only for 'websocket' scopes (call it from a websocket route)"
        )
    raise MiddlewareNotInstalled(
        f"No close context in this WebSocket scope (scope[{SCOPE_KEY!r}] is missing): {_HOW_TO_ADD}."
    )


def current_close_context() -> CloseContext | None:
    """Return the context of the WebSocket connection whose task is running, or ``None``."""
    return _current.get()
