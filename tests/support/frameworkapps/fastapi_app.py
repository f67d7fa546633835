"""FastAPI app for the real-server tests: CloseContextDep in an app route, an APIRouter, a
mounted sub-application, next to other dependencies, and in an app without the middleware.

Every route echoes text; "close" makes the app close with 4003 "nope". Once the handler has
seen the end, it prints what its dependency read (``emit("handler", ...)``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, WebSocket, WebSocketDisconnect

from asgi_ws_close import WebSocketCloseMiddleware
from asgi_ws_close.fastapi import CloseContextDep
from tests.support.frameworkapps.emit import echo_until_close, emit, on_close

__all__ = ["app", "bare", "router", "sub", "tracked"]


async def token(token: Annotated[str, Query()] = "ok") -> str:
    """Another dependency, beside CloseContextDep."""
    return token


async def echo_until_end(websocket: WebSocket, close: CloseContextDep, **extra: Any) -> None:
    await websocket.accept()
    try:
        await echo_until_close(websocket)
    except WebSocketDisconnect:
        pass
    emit("handler", websocket.scope, close, **extra)


tracked = FastAPI()
tracked.add_middleware(WebSocketCloseMiddleware, on_close=on_close)


@tracked.websocket("/ws")
async def app_route(websocket: WebSocket, close: CloseContextDep) -> None:
    await echo_until_end(websocket, close)


router = APIRouter(prefix="/router")


@router.websocket("/ws")
async def router_route(websocket: WebSocket, close: CloseContextDep, token: Annotated[str, Depends(token)]) -> None:
    await echo_until_end(websocket, close, token=token)


tracked.include_router(router)

sub = FastAPI()


@sub.websocket("/ws")
async def sub_route(websocket: WebSocket, close: CloseContextDep) -> None:
    await echo_until_end(websocket, close, root_path=websocket.scope.get("root_path"))


tracked.mount("/sub", sub)

# The same route, in an app without the middleware.
bare = FastAPI()
bare.add_api_websocket_route("/bare/ws", app_route)


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Serve /bare/... from the app without the middleware, everything else from ``tracked``."""
    target = bare if scope.get("path", "").startswith("/bare/") else tracked
    await target(scope, receive, send)
