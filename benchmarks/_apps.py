"""The apps under test: a raw ASGI echo app, a bare pass-through wrapper, and the HTTP apps.

The same echo app is used in process (benchmarks 1 and 4) and behind uvicorn (2 and 3), so that
the figures describe one workload. `server_app` builds what ``_server.py`` serves, by name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from asgi_ws_close import WebSocketCloseMiddleware

__all__ = [
    "SERVER_APPS",
    "CONTROL_QUERY",
    "PASS_THROUGH_QUERY",
    "WITHOUT_QUERY",
    "WITH_QUERY",
    "ASGIApp",
    "Message",
    "PassThrough",
    "Receive",
    "Scope",
    "SideBySide",
    "Send",
    "echo_app",
    "server_app",
]

# The ASGI shapes (as in starlette.types), spelled out here so that the benchmarks use only the
# package's public API.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, echo every message back until the disconnect, then return (raw ASGI)."""
    if scope["type"] != "websocket":
        return  # the echo servers only ever get WebSocket scopes (lifespan is off)
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        # A fresh dict per message, as every app and framework (Starlette's send_bytes) builds.
        await send({"type": "websocket.send", "bytes": message.get("bytes"), "text": message.get("text")})


class PassThrough:
    """The cheapest possible pure ASGI wrapper: the yardstick for benchmark 1.

    Like any middleware that needs to see messages, it wraps ``receive`` and ``send`` in
    closures, which just forward.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_passthrough() -> Message:
            return await receive()

        async def send_passthrough(message: Message) -> None:
            await send(message)

        await self.app(scope, receive_passthrough, send_passthrough)


def _http_app(with_middleware: bool) -> ASGIApp:
    # Imported here: only the HTTP server processes need Starlette.
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    middleware = [Middleware(WebSocketCloseMiddleware)] if with_middleware else []
    return Starlette(routes=[Route("/", hello)], middleware=middleware)


#: The query strings that pick a variant of a `SideBySide` app: the same length, so
#: that every request is the same bytes to parse.
WITHOUT_QUERY, WITH_QUERY, PASS_THROUGH_QUERY, CONTROL_QUERY = "xx", "mw", "pt", "aa"


class SideBySide:
    """Both variants of a comparison in one server process, picked per connection.

    A connection (or request) with the query string ``mw`` goes to the app behind the
    middleware, ``pt`` to it behind the bare pass-through wrapper (if given), any other (the
    A/A control ``aa`` included) to the same app alone. The variants then run in the very
    same process (memory layout, hash seed, CPU placement, allocator state), and the client
    can switch between them every few milliseconds: two processes of the same server differ
    by several percent on their own, and this machine's slow patches last seconds.
    """

    def __init__(self, without: ASGIApp, with_middleware: ASGIApp, pass_through: ASGIApp | None = None) -> None:
        self.without = without
        self._apps = {WITH_QUERY.encode(): with_middleware}
        if pass_through is not None:
            self._apps[PASS_THROUGH_QUERY.encode()] = pass_through

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The same lookup for every variant.
        await self._apps.get(scope.get("query_string", b""), self.without)(scope, receive, send)


#: What ``_server.py --app NAME`` can serve.
SERVER_APPS = ("echo", "http")


def server_app(name: str) -> ASGIApp:
    """Build the side-by-side app called ``name`` (one of `SERVER_APPS`)."""
    if name == "echo":
        return SideBySide(echo_app, WebSocketCloseMiddleware(echo_app), PassThrough(echo_app))
    if name == "http":
        return SideBySide(_http_app(with_middleware=False), _http_app(with_middleware=True))
    raise ValueError(f"unknown app {name!r}; expected one of {SERVER_APPS}")
