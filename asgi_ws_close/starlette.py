"""Starlette: a `WebSocketEndpoint` whose handlers read the whole close context.

Starlette's `WebSocketEndpoint.on_disconnect(websocket, close_code)` gets a code only, and
not always the one that ended the connection. `CloseAwareEndpoint` adds
`self.close_context`, the live `CloseContext`; everything else is Starlette's, unchanged:

```python
from asgi_ws_close.starlette import CloseAwareEndpoint

class Chat(CloseAwareEndpoint):
    encoding = "text"

    async def on_receive(self, websocket, data):
        await websocket.send_text(data)

    async def on_disconnect(self, websocket, close_code):
        close = self.close_context
        print(close.initiator, close.code, close.reason, close.clean)
```

Plain websocket routes need nothing from this module: `get_close_context(websocket)`, for
example in the `except WebSocketDisconnect:` block of Starlette's docs, which keeps
working unchanged (the middleware forwards every message as it is).
"""

from __future__ import annotations

try:
    from starlette.endpoints import WebSocketEndpoint
    from starlette.types import Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - exercised in a test by hiding starlette
    raise ImportError('asgi_ws_close.starlette needs Starlette: pip install "asgi-ws-close[starlette]"') from exc

from ._context import get_close_context
from ._record import CloseContext

__all__ = ["CloseAwareEndpoint"]


class CloseAwareEndpoint(WebSocketEndpoint):
    """A `WebSocketEndpoint` with `self.close_context`, for `on_disconnect` and after.

    When `on_disconnect` runs, the context tells what Starlette's `close_code` cannot:

    | how it ended | Starlette's `close_code` | `self.close_context` |
    |---|---|---|
    | the client closed | the client's code | initiator `"client"`, code, reason |
    | the app closed (`on_*`) | the server's answer (uvicorn: the app's code) | initiator `"app"`, its code and reason |
    | the transport was lost | 1005 or 1006, depending on the server | code 1006, initiator `None` |
    | a handler raised | 1011 (Starlette's dispatch sets it) | still `OPEN`: the exception has not left the app yet |

    In the last case the outcome is decided after `on_disconnect` (the client sees 1006
    under uvicorn, or 1011 with `close_on_error=True`): read it in the middleware's
    `on_close` hook, where `context.error` is the exception. When the app closed, `TestClient`
    answers with 1000 when its block ends, so that is Starlette's `close_code` in tests.

    Attributes:
        close_context: The connection's live context, set before `on_connect`.

    Raises:
        MiddlewareNotInstalled: when the endpoint is created, before `on_connect`, if
            `WebSocketCloseMiddleware` does not wrap the app, rather than later inside
            `on_disconnect`, where the error would replace the handler's.
    """

    close_context: CloseContext

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        super().__init__(scope, receive, send)
        self.close_context = get_close_context(scope)
