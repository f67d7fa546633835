"""Starlette app for the real-server tests: a CloseAwareEndpoint, and plain routes written as
in Starlette's docs (``except WebSocketDisconnect``, ``iter_text()``, ``WebSocketException``).

Every route echoes text; "close" makes the app close with 4003 "nope"; the endpoint raises
RuntimeError on "raise". Each handler prints what it read once it has seen the end.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import WebSocketException
from starlette.middleware import Middleware
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_ws_close import WebSocketCloseMiddleware, get_close_context
from asgi_ws_close.starlette import CloseAwareEndpoint
from tests.support.frameworkapps.emit import echo_until_close, emit, on_close

__all__ = ["Endpoint", "app", "routes"]


class Endpoint(CloseAwareEndpoint):
    encoding = "text"

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        if data == "close":
            # Starlette's dispatch then receives the server's answer, and calls on_disconnect.
            await websocket.close(4003, "nope")
        elif data == "raise":
            raise RuntimeError("boom")
        else:
            await websocket.send_text(data)

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        emit("handler", websocket.scope, self.close_context, close_code=close_code)


async def docs_route(websocket: WebSocket) -> None:
    # The pattern of Starlette's docs, with the context read where the disconnect is handled.
    await websocket.accept()
    try:
        await echo_until_close(websocket)
    except WebSocketDisconnect as exc:
        emit("handler", websocket.scope, get_close_context(websocket), exc_code=exc.code, exc_reason=exc.reason)
    else:
        emit("handler", websocket.scope, get_close_context(websocket))


async def iter_route(websocket: WebSocket) -> None:
    await websocket.accept()
    async for data in websocket.iter_text():  # stops at the disconnect
        if data == "close":
            raise WebSocketException(4003, "nope")  # closed by Starlette's ExceptionMiddleware
        await websocket.send_text(data)
    emit("handler", websocket.scope, get_close_context(websocket))


routes = [
    WebSocketRoute("/endpoint", Endpoint),
    WebSocketRoute("/docs", docs_route),
    WebSocketRoute("/iter", iter_route),
    Mount("/mounted", routes=[WebSocketRoute("/endpoint", Endpoint)]),
]

app = Starlette(routes=routes, middleware=[Middleware(WebSocketCloseMiddleware, on_close=on_close)])
