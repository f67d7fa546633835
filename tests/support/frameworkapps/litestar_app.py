"""Litestar app for the real-server tests: the middleware in the app's middleware list, a
websocket handler that gets the context by dependency injection, and a websocket_listener
whose on_disconnect reads it with get_close_context().

Both echo text; "close" makes the handler (not the listener, which only echoes) close with
4003 "nope". Each prints what it read once it has seen the end.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, WebSocket, websocket, websocket_listener
from litestar.di import NamedDependency, Provide
from litestar.exceptions import WebSocketDisconnect

from asgi_ws_close import CloseContext, get_close_context
from asgi_ws_close.litestar import close_middleware, provide_close_context
from tests.support.frameworkapps.emit import echo_until_close, emit, on_close

__all__ = ["app", "bare", "handler", "listener"]


@websocket("/ws")
async def handler(socket: WebSocket[Any, Any, Any], close_context: NamedDependency[CloseContext]) -> None:
    await socket.accept()
    try:
        await echo_until_close(socket)
    except WebSocketDisconnect:
        pass
    emit("handler", socket.scope, close_context)


async def on_disconnect(socket: WebSocket[Any, Any, Any]) -> None:
    emit("handler", socket.scope, get_close_context(socket))


@websocket_listener("/listener", on_disconnect=on_disconnect)
async def listener(data: str) -> str:
    return data


dependencies = {"close_context": Provide(provide_close_context)}

# logging_config=None: by default Litestar configures the root logger when an app is made,
# which would reach every other test of a process that imports this module.
app = Litestar(
    [handler, listener],
    logging_config=None,
    middleware=[close_middleware(on_close=on_close)],
    dependencies=dependencies,
)

# The same handler, in an app without the middleware.
bare = Litestar([handler], dependencies=dependencies, logging_config=None)
