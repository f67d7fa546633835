"""Litestar: the middleware goes in the app's middleware list; handlers read the context.

```python
from litestar import Litestar, WebSocket, websocket
from litestar.di import NamedDependency, Provide
from asgi_ws_close import CloseContext
from asgi_ws_close.litestar import close_middleware, provide_close_context

@websocket("/ws")
async def chat(socket: WebSocket, close_context: NamedDependency[CloseContext]) -> None:
    ...

app = Litestar(
    [chat],
    middleware=[close_middleware(on_close=log_close)],
    dependencies={"close_context": Provide(provide_close_context)},
)
```

`close_middleware` is `DefineMiddleware(WebSocketCloseMiddleware, **options)`, typed
for Litestar: the core's ASGI types are plain mappings, which mypy does not accept where
Litestar expects its TypedDict-based ones. Untyped code may use `DefineMiddleware` (or
`middleware=[WebSocketCloseMiddleware]`) directly, to the same effect.

Litestar builds the middleware stack per route handler, so connections to a path that
matches no websocket route are not tracked (Litestar refuses them before any middleware
runs). Without dependency injection, `get_close_context(socket)` reads the same context,
in handlers and in a `websocket_listener`'s `on_disconnect` callback.
"""

from __future__ import annotations

from typing import Any

try:
    from litestar import WebSocket
    from litestar.middleware import DefineMiddleware
except ImportError as exc:  # pragma: no cover - exercised in a test by hiding litestar
    raise ImportError('asgi_ws_close.litestar needs Litestar: pip install "asgi-ws-close[litestar]"') from exc

from ._context import get_close_context
from ._middleware import WebSocketCloseMiddleware
from ._record import CloseContext
from .exceptions import MiddlewareNotInstalled

__all__ = ["close_middleware", "provide_close_context"]


def close_middleware(**options: Any) -> DefineMiddleware:
    """Return `WebSocketCloseMiddleware` with `options`, for `middleware=[...]`.

    Args:
        options: The middleware's keyword options (`on_close`, `invalid_close`, ...),
            checked when Litestar builds its route handlers' middleware stacks.
    """
    # Any: the middleware is a valid Litestar ASGI app factory, but its scope type is a plain
    # MutableMapping, not Litestar's TypedDict union.
    factory: Any = WebSocketCloseMiddleware
    return DefineMiddleware(factory, **options)


async def provide_close_context(socket: WebSocket[Any, Any, Any]) -> CloseContext:
    """Litestar dependency provider: the `CloseContext` of this WebSocket.

    Register it with `dependencies={"close_context": Provide(provide_close_context)}` and
    declare `close_context: NamedDependency[CloseContext]` in the handler. It is `async`
    so that Litestar needs no `sync_to_thread` decision for it.

    Raises:
        MiddlewareNotInstalled: `WebSocketCloseMiddleware` is not in the middleware of this
            route's layers (app, router, controller or handler). Litestar closes the
            connection with 4500 and logs the exception only with `debug=True` (or
            `logging_config=LoggingConfig(log_exceptions="always")`).
    """
    try:
        return get_close_context(socket)
    except MiddlewareNotInstalled as exc:
        raise MiddlewareNotInstalled(
            f"{exc} With Litestar: Litestar(..., middleware=[WebSocketCloseMiddleware]), or "
            f"DefineMiddleware(WebSocketCloseMiddleware, on_close=...) to pass options "
            f"(asked for by asgi_ws_close.litestar.provide_close_context, route {socket.scope.get('path')!r})"
        ) from None
