"""Exceptions raised by asgi_ws_close.

- `WebSocketCloseError`: base class of every exception of this package.
    - `MiddlewareNotInstalled` (also a `LookupError`): a close context was asked for where
      `WebSocketCloseMiddleware` does not run.

Nothing here is raised because of what a peer or a server sends: only misuse raises.
"""

from __future__ import annotations

__all__ = ["MiddlewareNotInstalled", "WebSocketCloseError"]


class WebSocketCloseError(Exception):
    """Base class of the exceptions of asgi_ws_close."""


class MiddlewareNotInstalled(WebSocketCloseError, LookupError):
    """No close context in this scope: the middleware does not wrap this app.

    The message says how to add it.
    """
