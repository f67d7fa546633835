"""Log, count and trace how every WebSocket connection ended, in one FastAPI app.

Run it (from the repository root)::

    pip install -e ".[demo,prometheus,otel]"
    python examples/observability.py                         # http://127.0.0.1:8000

    # or with several workers, in prometheus-client's multiprocess mode (an empty directory
    # at every start; dead workers leave the open-connections gauge: docs/observability.md):
    export PROMETHEUS_MULTIPROC_DIR=$(mktemp -d)
    uvicorn examples.observability:app --workers 2

Then talk to ``ws://127.0.0.1:8000/ws`` (``python -m websockets ws://127.0.0.1:8000/ws``):
text is echoed, ``close 4003 nope`` makes the server close with that code and reason.
Each connection's end gives one log line (its fields as JSON after it), a sample in
``curl http://127.0.0.1:8000/metrics``, and, once an OpenTelemetry SDK is configured
(``opentelemetry-instrument``, or your own providers), attributes on the connection's span
and OpenTelemetry metrics.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from asgi_ws_close import WebSocketCloseMiddleware
from asgi_ws_close.integrations.logging import EXTRA_KEY, log_close
from asgi_ws_close.integrations.otel import OpenTelemetryCloseInstrumentation
from asgi_ws_close.integrations.prometheus import PrometheusCloseMetrics, exposition_registry


class CloseFieldsFormatter(logging.Formatter):
    """The usual line, then the close fields as JSON when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, EXTRA_KEY, None)
        return line if fields is None else f"{line} {json.dumps(fields, sort_keys=True)}"


handler = logging.StreamHandler()
handler.setFormatter(CloseFieldsFormatter("%(levelname)s %(name)s: %(message)s"))
logging.getLogger("asgi_ws_close").addHandler(handler)
logging.getLogger("asgi_ws_close").setLevel(logging.INFO)

# Once per process: each registers its metrics.
metrics = PrometheusCloseMetrics(keep_codes={4003})
otel = OpenTelemetryCloseInstrumentation(keep_codes={4003})

app = FastAPI(title="asgi-ws-close observability example")
# add_middleware puts each new middleware outside the previous ones.
app.add_middleware(WebSocketCloseMiddleware, on_close=[log_close, metrics.on_close, otel.on_close])
app.add_middleware(metrics.middleware)
app.add_middleware(otel.middleware)
try:  # the span per connection, when opentelemetry-instrumentation-asgi is installed
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
except ImportError:
    pass
else:
    app.add_middleware(OpenTelemetryMiddleware)

# This process's metrics, or, under PROMETHEUS_MULTIPROC_DIR, every live worker's.
registry = exposition_registry()


@app.get("/metrics")
def prometheus_metrics(request: Request) -> Response:
    """The Prometheus exposition, at /metrics itself (a mount would redirect to /metrics/)."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    """Echo text; "close CODE REASON" makes the server close with that code and reason."""
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            if text.startswith("close"):
                _, _, rest = text.partition(" ")
                code, _, reason = rest.partition(" ")
                await websocket.close(int(code or 1000), reason)
                return
            await websocket.send_text(text)
    except WebSocketDisconnect:
        pass


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
