"""Litestar: the middleware in the app's middleware list, the context injected in a handler.

Run it with ``python examples/frameworks/litestar_app.py`` (127.0.0.1:8000, or ``PORT``),
then connect to ``ws://127.0.0.1:8000/ws``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from litestar import Litestar, WebSocket, websocket
from litestar.di import NamedDependency, Provide
from litestar.exceptions import WebSocketDisconnect

from asgi_ws_close import CloseContext
from asgi_ws_close.litestar import close_middleware, provide_close_context

logger = logging.getLogger("example")


def log_close(context: CloseContext, scope: Any) -> None:
    logger.info("closed %s %s", scope["path"], json.dumps(context.to_dict()))


@websocket("/ws")
async def echo(socket: WebSocket[Any, Any, Any], close_context: NamedDependency[CloseContext]) -> None:
    await socket.accept()
    try:
        while True:
            await socket.send_text(await socket.receive_text())
    except WebSocketDisconnect:
        logger.info("handler saw: %s", close_context)


app = Litestar(
    [echo],
    logging_config=None,  # this example configures logging itself, with basicConfig() below
    middleware=[close_middleware(on_close=log_close)],
    dependencies={"close_context": Provide(provide_close_context)},
)

if __name__ == "__main__":
    import uvicorn

    logging.basicConfig(level=logging.INFO)
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
