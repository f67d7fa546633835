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
record, and a thin adapter feeds it. This module holds the public API; close-code helpers are
in `asgi_ws_close.codes`, the framework helpers in `asgi_ws_close.fastapi`,
`asgi_ws_close.starlette`, `asgi_ws_close.litestar` and `asgi_ws_close.testing`, the
logging, Prometheus, OpenTelemetry and Sentry hooks in `asgi_ws_close.integrations`.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from . import codes
from ._codes import Close, CloseCode
from ._context import SCOPE_KEY, current_close_context, get_close_context
from ._middleware import InvalidClosePolicy, WebSocketCloseMiddleware
from ._record import CloseContext, CloseRecord, OnClose, Outcome
from ._tracker import ConnectionState
from .exceptions import MiddlewareNotInstalled, WebSocketCloseError

__version__ = "0.1.0"

__all__ = [
    "SCOPE_KEY",
    "Close",
    "CloseCode",
    "CloseContext",
    "CloseRecord",
    "ConnectionState",
    "InvalidClosePolicy",
    "MiddlewareNotInstalled",
    "OnClose",
    "Outcome",
    "WebSocketCloseError",
    "WebSocketCloseMiddleware",
    "__version__",
    "current_close_context",
    "get_close_context",
]

# Names that 0.1.0 exported from here: where each lives now (the code helpers: every name of
# asgi_ws_close.codes that is not also here).
_MOVED = {
    **dict.fromkeys(sorted(set(codes.__all__) - set(__all__)), "asgi_ws_close.codes"),
    # Internals: the middleware's own, not an API.
    "CloseTracker": "asgi_ws_close._tracker",
    "SERVERS": "asgi_ws_close._servers",
    "ServerQuirks": "asgi_ws_close._servers",
    "detect_server": "asgi_ws_close._servers",
}


def __getattr__(name: str) -> Any:
    """Deprecated names of 0.1.0: they still resolve, with a warning that says where they went."""
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"asgi_ws_close.{name} is deprecated: import it from {module} instead",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(module), name)
