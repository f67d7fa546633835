"""Starlette: a WebSocketEndpoint that knows who closed, with which code and reason.

Run it with ``python examples/frameworks/starlette_endpoint.py`` (127.0.0.1:8000, or
``PORT``), then connect to ``ws://127.0.0.1:8000/ws``; send "bye" to make the server close.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware
from asgi_ws_close.starlette import CloseAwareEndpoint

logger = logging.getLogger("example")


def log_close(context: CloseContext, scope: Any) -> None:
    logger.info("closed %s %s", scope["path"], json.dumps(context.to_dict()))


class Echo(CloseAwareEndpoint):
    encoding = "text"

    async def on_receive(self, websocket: WebSocket, data: Any) -> None:
        if data == "bye":
            await websocket.close(4000, "see you")
        else:
            await websocket.send_text(data)

    async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
        # close_code alone cannot tell a client's 4001 from the app's own close.
        close = self.close_context
        logger.info("handler saw: %s by %s, reason %r", close.code, close.initiator, close.reason)


app = Starlette(
    routes=[WebSocketRoute("/ws", Echo)],
    middleware=[Middleware(WebSocketCloseMiddleware, on_close=log_close)],
)

if __name__ == "__main__":
    import uvicorn

    logging.basicConfig(level=logging.INFO)
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
