"""FastAPI: the close context as a dependency of a websocket route.

Run it with ``python examples/frameworks/fastapi_dep.py`` (127.0.0.1:8000, or ``PORT``), then
connect to ``ws://127.0.0.1:8000/ws?token=secret``. A bad token is refused with 4403.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware
from asgi_ws_close.fastapi import CloseContextDep

logger = logging.getLogger("example")


def log_close(context: CloseContext, scope: Any) -> None:
    logger.info("closed %s %s", scope["path"], json.dumps(context.to_dict()))


app = FastAPI()
app.add_middleware(WebSocketCloseMiddleware, on_close=log_close)


@app.websocket("/ws")
async def echo(websocket: WebSocket, close: CloseContextDep, token: str = "") -> None:
    if token != "secret":
        await websocket.close(4403, "forbidden")  # before accept: the client gets HTTP 403
        return
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        logger.info("handler saw: %s", close)  # e.g. closed by client: 4001 (private use) bye, clean


if __name__ == "__main__":
    import uvicorn

    logging.basicConfig(level=logging.INFO)
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
