"""Starlette and FastAPI apps for the real-server tests (tests/test_servers.py).

uvicorn loads them as ``tests.serverapp:starlette_app`` and ``tests.serverapp:fastapi_app``.
Both wrap the same WebSocket routes, one per scenario, with :class:`WebSocketCloseMiddleware`
added the way users add it. Every connection carries a test-chosen ``id`` query parameter;
the handler (once it has seen the end) and the ``on_close`` hook each append one JSON line,
``{"id": ..., "source": "handler" | "on_close", "record": CloseContext.to_dict(), ...}``, to the
file named by the ``ASGI_WS_CLOSE_RECORDS`` environment variable.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware, get_close_context

__all__ = ["RECORDS_ENV", "ROUTES", "fastapi_app", "starlette_app"]

#: Environment variable naming the JSONL file the records are appended to.
RECORDS_ENV = "ASGI_WS_CLOSE_RECORDS"

# Bound on the handlers' own waits (a follow-up receive after a close or a rejection).
_FOLLOW_UP_TIMEOUT = 5.0


def connection_id(scope: Any) -> str:
    """Return the test-chosen ``id`` query parameter of a connection's scope."""
    query = scope.get("query_string", b"").decode("latin-1")
    ids: list[str] = parse_qs(query).get("id", [""])
    return ids[0]


def _append(line: dict[str, Any]) -> None:
    # One open/append/flush per line: readers poll the file while the server runs.
    with open(os.environ[RECORDS_ENV], "a", encoding="utf-8") as file:
        file.write(json.dumps(line, sort_keys=True) + "\n")
        file.flush()


def _write_handler_record(websocket: WebSocket, **extra: Any) -> None:
    record = get_close_context(websocket).to_dict()
    _append({"id": connection_id(websocket.scope), "source": "handler", "record": record, **extra})


def on_close(context: CloseContext, scope: Any) -> None:
    """The middleware's hook: one line per connection, after it ended."""
    _append({"id": connection_id(scope), "source": "on_close", "record": context.to_dict()})


def _message_dict(message: Any) -> dict[str, Any]:
    # The raw ASGI message, JSON-safe, keeping the difference between "no key" and a value.
    return {str(key): value for key, value in dict(message).items()}


async def _until_disconnect(websocket: WebSocket) -> dict[str, Any]:
    # Raw receive() until websocket.disconnect (Starlette first hands out websocket.connect
    # when the app closed or denied before it ever received).
    async def loop() -> dict[str, Any]:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return _message_dict(message)

    return await asyncio.wait_for(loop(), _FOLLOW_UP_TIMEOUT)


async def echo(websocket: WebSocket) -> None:
    """Accept, echo text until the connection ends."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect as exc:
        _write_handler_record(websocket, disconnect={"code": exc.code, "reason": exc.reason})


async def app_close(websocket: WebSocket) -> None:
    """Accept, close with ``?code=&reason=``, then receive the follow-up disconnect."""
    code = int(websocket.query_params.get("code", "1000"))
    reason = websocket.query_params.get("reason", "")
    await websocket.accept()
    await websocket.close(code=code, reason=reason)
    message = await asyncio.wait_for(websocket.receive(), _FOLLOW_UP_TIMEOUT)
    _write_handler_record(websocket, disconnect=_message_dict(message))


async def reject(websocket: WebSocket) -> None:
    """Close before accept with ``?code=`` (the client gets HTTP 403)."""
    await websocket.close(code=int(websocket.query_params.get("code", "1000")))
    _write_handler_record(websocket, disconnect=await _until_disconnect(websocket))


async def deny(websocket: WebSocket) -> None:
    """Answer the handshake with a denial response, HTTP 401."""
    await websocket.send_denial_response(Response(status_code=401))
    _write_handler_record(websocket, disconnect=await _until_disconnect(websocket))


async def raise_after_accept(websocket: WebSocket) -> None:
    """Accept, then raise (no handler record: the handler never sees the end)."""
    await websocket.accept()
    raise RuntimeError("boom from the app")


async def return_after_accept(websocket: WebSocket) -> None:
    """Accept, then return without closing; the handler records the live (open) context."""
    await websocket.accept()
    _write_handler_record(websocket)


ROUTES: dict[str, Callable[[WebSocket], Awaitable[None]]] = {
    "/ws/echo": echo,
    "/ws/app-close": app_close,
    "/ws/reject": reject,
    "/ws/deny": deny,
    "/ws/raise": raise_after_accept,
    "/ws/return": return_after_accept,
}

starlette_app = Starlette(routes=[WebSocketRoute(path, func) for path, func in ROUTES.items()])
starlette_app.add_middleware(WebSocketCloseMiddleware, on_close=on_close)

fastapi_app = FastAPI()
for _path, _func in ROUTES.items():
    fastapi_app.add_api_websocket_route(_path, _func)
fastapi_app.add_middleware(WebSocketCloseMiddleware, on_close=on_close)
