"""Echo apps for the Autobahn TestSuite run, three ways: bare, wrapped at defaults, wrapped with every policy.

Serve one with ``python -m uvicorn tests.autobahn.echo:<plain|default|policies>``. Each app
echoes text and bytes until the connection ends, and appends JSON lines to the file named by
:data:`RECORDS_ENV` (nothing is written if it is unset):

* ``{"conn": N, "event": "open", "client": [host, port]}`` when a ``websocket`` scope arrives;
* ``{"conn": N, "event": "disconnect", "message": {...}}`` for every ``websocket.disconnect``
  the echo app receives, the message exactly as the server sent it (the ``reason`` key may be
  absent: that is how uvicorn's wsproto and websockets-sansio report a lost transport);
* ``{"conn": N, "event": "send_failed", "error": "..."}`` when the server refused an echo
  (``ClientDisconnected``, an ``OSError``, once the client has gone): the app then keeps
  receiving, as ASGI apps should, until the disconnect;
* ``{"conn": N, "event": "on_close", "context": {...}}`` from the ``on_close`` hook of the
  wrapped apps: ``CloseContext.to_dict()``.

``N`` counts the ``websocket`` scopes of the server process, from 0, in the order they arrive:
wstest's fuzzingclient runs its cases one after another, one connection each, so ``N`` is the
case's position in the run. An outer layer numbers the scope before the middleware sees it, so
that the hook and the app name the same connection.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware
from asgi_ws_close._types import ASGIApp, Receive, Scope, Send

__all__ = ["CONN_KEY", "RECORDS_ENV", "default", "plain", "policies"]

#: The environment variable that names the JSONL file the apps append to.
RECORDS_ENV = "ASGI_WS_CLOSE_AUTOBAHN_RECORDS"
#: Where the connection number lives in the scope.
CONN_KEY = "asgi_ws_close.autobahn.conn"


def _record(conn: int, event: str, **fields: Any) -> None:
    path = os.environ.get(RECORDS_ENV)
    if not path:
        return
    line = json.dumps({"conn": conn, "event": event, **fields}, sort_keys=True)
    # One short append per event; the server's only process is the only writer.
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, echo every message, and return after the first ``websocket.disconnect``."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        raise RuntimeError(f"the echo app serves WebSocket only, not {scope['type']!r}")
    conn: int = scope[CONN_KEY]
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.receive":
            if message.get("bytes") is not None:
                reply = {"type": "websocket.send", "bytes": message["bytes"]}
            else:
                reply = {"type": "websocket.send", "text": message.get("text")}
            try:
                await send(reply)
            except OSError as exc:
                # The client has gone (uvicorn's ClientDisconnected): the disconnect follows.
                _record(conn, "send_failed", error=f"{type(exc).__name__}: {exc}")
        elif kind == "websocket.disconnect":
            _record(conn, "disconnect", message=dict(message))
            return


def _numbered(app: ASGIApp) -> ASGIApp:
    counter = itertools.count()

    async def numbered(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            conn = next(counter)
            scope[CONN_KEY] = conn
            client = scope.get("client")
            _record(conn, "open", client=None if client is None else list(client), path=scope.get("path"))
        await app(scope, receive, send)

    return numbered


def _record_on_close(context: CloseContext, scope: Scope) -> None:
    _record(scope[CONN_KEY], "on_close", context=context.to_dict())


#: The echo app alone.
plain: ASGIApp = _numbered(echo)
#: The echo app in the middleware at its defaults (only the ``on_close`` hook set).
default: ASGIApp = _numbered(WebSocketCloseMiddleware(echo, on_close=_record_on_close))
#: The echo app in the middleware with every policy on.
policies: ASGIApp = _numbered(
    WebSocketCloseMiddleware(
        echo,
        on_close=_record_on_close,
        invalid_close="fix",
        close_on_error=True,
        reject_with_close_code=True,
    )
)
