"""A FastAPI app that logs how every WebSocket connection ended.

Run it (from the repository root, after ``pip install -e ".[demo]"``)::

    python examples/fastapi_app.py            # http://127.0.0.1:8000/

Open the page, connect, then close from the browser with a code and reason, or ask the
server to close ("close 4003 nope"), or just close the tab: one log line per connection
says who closed it, with which code and reason, and whether it was clean.
"""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

from asgi_ws_close import WebSocketCloseMiddleware, get_close_context
from asgi_ws_close.integrations.logging import log_close

logger = logging.getLogger("examples.fastapi_app")

# log_close: one line per connection on the "asgi_ws_close" logger, INFO when clean, WARNING
# otherwise, with every peer-controlled text (reason, path) escaped and capped.
app = FastAPI(title="asgi-ws-close example")
app.add_middleware(WebSocketCloseMiddleware, on_close=log_close)


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
        context = get_close_context(websocket)
        logger.debug("handler saw the end: initiator=%s code=%s", context.initiator, context.code)


PAGE = """<!doctype html>
<meta charset="utf-8"><title>asgi-ws-close example</title>
<h1>asgi-ws-close example</h1>
<p><button id="open">Open</button>
code <input id="code" value="4001" size="5"> reason <input id="reason" value="bye">
<button id="close">Close from the browser</button>
<button id="srv">Ask the server to close</button></p>
<pre id="log"></pre>
<script>
let ws; const log = (t) => { document.getElementById("log").textContent += t + "\\n"; };
const $ = (id) => document.getElementById(id);
$("open").onclick = () => {
  ws = new WebSocket(`ws://${location.host}/ws`);
  ws.onopen = () => log("open");
  ws.onmessage = (e) => log("message " + e.data);
  ws.onclose = (e) => log(`close code=${e.code} reason=${JSON.stringify(e.reason)} wasClean=${e.wasClean}`);
};
$("close").onclick = () => ws && ws.close(Number($("code").value), $("reason").value);
$("srv").onclick = () => ws && ws.send(`close ${$("code").value} ${$("reason").value}`);
</script>
"""


@app.get("/")
async def index() -> HTMLResponse:
    return HTMLResponse(PAGE)


if __name__ == "__main__":
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
