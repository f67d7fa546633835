"""The Prometheus recipe of docs/observability.md, deployed:
`uvicorn tests.support.promapp:app --workers 4` and
`gunicorn tests.support.promapp:app -k uvicorn_worker.UvicornWorker --workers 4`.

A Starlette app wired exactly as the "Prometheus" section of docs/observability.md says (the
close hooks, the gauge's middleware, `exposition_registry()` served at `/metrics` by a route,
hence no redirect), with the WebSocket routes the tier drives:

* `/ws/hold`: accepts, sends the worker's PID, then waits for the end (the client closes
  with its code, drops the TCP connection, or keeps it open);
* `/ws/close`: accepts, sends the PID, closes with 4002 and waits for the client's reply;
* `/ws/reject`: closes (4003) before accepting: a rejected handshake (HTTP 403).

Test-only addition: with `ASGI_WS_CLOSE_READY_DIR` set, each worker touches
`ready-<pid>` there once its app exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_ws_close import WebSocketCloseMiddleware
from asgi_ws_close.integrations.logging import log_close
from asgi_ws_close.integrations.prometheus import PrometheusCloseMetrics, exposition_registry

__all__ = ["APP_CLOSE_CODE", "KEEP_CODES", "READY_DIR_ENV", "REJECT_CODE", "app"]

READY_DIR_ENV = "ASGI_WS_CLOSE_READY_DIR"
#: The code the app closes `/ws/close` with, and the one it rejects `/ws/reject` with.
APP_CLOSE_CODE = 4002
REJECT_CODE = 4003
#: The app's own codes that get a label of their own.
KEEP_CODES = frozenset({4001, APP_CLOSE_CODE})


async def hold(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(str(os.getpid()))
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass


async def app_close(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(str(os.getpid()))
    await websocket.close(APP_CLOSE_CODE)
    await websocket.receive()  # websocket.disconnect: the client's close frame, or a drop


async def reject(websocket: WebSocket) -> None:
    await websocket.close(REJECT_CODE)


app = Starlette(
    routes=[
        WebSocketRoute("/ws/hold", hold),
        WebSocketRoute("/ws/close", app_close),
        WebSocketRoute("/ws/reject", reject),
    ]
)

# The recipe (docs/observability.md, "Prometheus").
metrics = PrometheusCloseMetrics(keep_codes=KEEP_CODES)  # once per process: it registers its metrics
app.add_middleware(WebSocketCloseMiddleware, on_close=[log_close, metrics.on_close])
app.add_middleware(metrics.middleware)  # the active-connections gauge
registry = exposition_registry()  # this process's metrics, or every live worker's (multiprocess)


def prometheus_metrics(request):  # GET /metrics itself: no redirect
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


app.add_route("/metrics", prometheus_metrics)

_ready_dir = os.environ.get(READY_DIR_ENV)
if _ready_dir:
    (Path(_ready_dir) / f"ready-{os.getpid()}").touch()
