"""asgi_ws_close: how did this WebSocket end? Who closed it, with which code and reason, cleanly?

An ASGI middleware, `WebSocketCloseMiddleware`, records the close of every WebSocket
connection in a `CloseContext` that it puts in the ASGI scope, normalised so that the
answer is the same under every ASGI server. Read it with `get_close_context(websocket)` in a
handler, or get it in an `on_close` hook once the connection has ended:

```python
from asgi_ws_close import WebSocketCloseMiddleware

def print_close(context, scope):
    print(scope["path"], context)  # /ws closed by client: 4001 (private use) bye, clean

app = WebSocketCloseMiddleware(app, on_close=print_close)
```

The package contains no networking code: a sans-I/O tracker turns ASGI messages into a close
record, and a thin adapter feeds it. Everything in the submodules' `__all__` is re-exported
here as the public API; the framework helpers are the submodules `asgi_ws_close.fastapi`,
`asgi_ws_close.starlette`, `asgi_ws_close.litestar` and `asgi_ws_close.testing`.
"""

from __future__ import annotations

from ._codes import (
    CLOSE_CODE_EXPLANATIONS,
    MAX_REASON_BYTES,
    OK_CLOSE_CODES,
    Close,
    CloseCode,
    close_violation,
    is_valid_close_code,
    truncate_reason,
)
from ._context import SCOPE_KEY, current_close_context, get_close_context
from ._middleware import InvalidClosePolicy, WebSocketCloseMiddleware
from ._record import CloseContext, CloseRecord, OnClose, Outcome
from ._sanitize import CODE_LABELS, ELLIPSIS, MAX_REASON_LENGTH, code_label, sanitize_reason
from ._servers import SERVERS, ServerQuirks, detect_server
from ._tracker import CloseTracker, ConnectionState
from .exceptions import MiddlewareNotInstalled, WebSocketCloseError

__version__ = "0.1.0"

__all__ = [
    "CLOSE_CODE_EXPLANATIONS",
    "CODE_LABELS",
    "ELLIPSIS",
    "MAX_REASON_BYTES",
    "MAX_REASON_LENGTH",
    "OK_CLOSE_CODES",
    "SCOPE_KEY",
    "SERVERS",
    "Close",
    "CloseCode",
    "CloseContext",
    "CloseRecord",
    "CloseTracker",
    "ConnectionState",
    "InvalidClosePolicy",
    "MiddlewareNotInstalled",
    "OnClose",
    "Outcome",
    "ServerQuirks",
    "WebSocketCloseError",
    "WebSocketCloseMiddleware",
    "__version__",
    "close_violation",
    "code_label",
    "current_close_context",
    "detect_server",
    "get_close_context",
    "is_valid_close_code",
    "sanitize_reason",
    "truncate_reason",
]
