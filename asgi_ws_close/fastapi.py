"""FastAPI: declare the close context in a websocket route's signature.

```python
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from asgi_ws_close import WebSocketCloseMiddleware
from asgi_ws_close.fastapi import CloseContextDep

app = FastAPI()
app.add_middleware(WebSocketCloseMiddleware)

@app.websocket("/ws")
async def chat(websocket: WebSocket, close: CloseContextDep) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        print(close.initiator, close.code, close.reason)  # "client", 4001, "bye"
```

The dependency reads the context that the middleware put in the scope, so it works in
`APIRouter` routes, in sub-applications mounted with `app.mount()` (the middleware of the
parent app reaches them: the mount passes the same scope), and next to any other
dependency. The dependency resolves before the route runs, so its context is live: `state` is
`CONNECTING`, then `OPEN`; right after the app's own `close(4002, ...)` it is `CLOSING`, with
`sent` set to that close and `initiator` `"app"`; `code`, `clean` and `outcome` are set once the
connection has ended (the server's disconnect, or the route's return). After
`WebSocketDisconnect`, the client's close is all there.

Without the middleware, the dependency raises `MiddlewareNotInstalled` before the handshake
completes, naming the route and the fix: the client gets HTTP 500 (uvicorn logs the exception
with its traceback) and `TestClient` re-raises it in the test.
"""

from __future__ import annotations

from typing import Annotated

try:
    from fastapi import Depends
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - exercised in a test by hiding fastapi
    raise ImportError('asgi_ws_close.fastapi needs FastAPI: pip install "asgi-ws-close[fastapi]"') from exc

from ._context import get_close_context
from ._record import CloseContext
from .exceptions import MiddlewareNotInstalled

__all__ = ["CloseContextDep", "close_context"]


async def close_context(connection: HTTPConnection) -> CloseContext:
    """FastAPI dependency: the `CloseContext` of this WebSocket.

    Declared `async` so that FastAPI calls it on the event loop, not in its thread pool.

    Raises:
        MiddlewareNotInstalled: `WebSocketCloseMiddleware` does not wrap the app.
        ValueError: the route is not a websocket route.
    """
    try:
        return get_close_context(connection)
    except (MiddlewareNotInstalled, ValueError) as exc:
        path = connection.scope.get("path")
        raise type(exc)(
            f"{exc} (asked for by the asgi_ws_close.fastapi.close_context dependency of the route at {path!r})"
        ) from None


CloseContextDep = Annotated[CloseContext, Depends(close_context)]
"""`Annotated` alias for a route parameter: `async def ws(websocket: WebSocket, close: CloseContextDep)`."""
