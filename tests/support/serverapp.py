"""Starlette and FastAPI apps for the real-server tests (``tests/matrix``).

Every server loads them as ``tests.support.serverapp:starlette_app`` and ``tests.support.serverapp:fastapi_app``
(and, for ``tests/test_wrapped_send.py``, the Starlette app behind a middleware that wraps
``send``: :data:`WRAPPED_SEND_APPS`). All wrap the same WebSocket routes, one per kind of
scenario, with :class:`WebSocketCloseMiddleware` added the way users add it. Every connection
carries a test-chosen ``id`` query parameter. Each handler appends one JSON line when it is
done, ``{"id": ..., "source": "handler", "record": CloseContext.to_dict(), "app": {...},
"asgi": ...}``, where ``app`` says what the server handed the app at the end:
``{"disconnect": <the message as it came, with or without a reason key>}``,
``{"timeout": seconds}`` (a bounded follow-up ``receive()`` that got nothing),
``{"cancelled": true}`` (the server cancelled the handler), ``{"raised": "Type: message"}`` or
``{"returned": true}`` (the send-only route adds ``"sent": N``), and ``asgi`` is the scope's
``asgi`` as the server announced it. The ``on_close`` hook appends
``{"id": ..., "source": "on_close", "record": ...}``. Lines go to the file named by the
``ASGI_WS_CLOSE_RECORDS`` environment variable.

The handlers never sleep, and each of their waits is bounded: a server that delivers nothing
yields ``{"timeout": ...}`` after ``?wait=`` seconds (default :data:`FOLLOW_UP_TIMEOUT`), a
deterministic outcome whatever the server's timing. (The send-only route paces its sends,
:data:`SEND_INTERVAL` apart, at most :data:`SEND_LIMIT` of them.)
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware, get_close_context

__all__ = [
    "FOLLOW_UP_TIMEOUT",
    "RECORDS_ENV",
    "ROUTES",
    "SEND_INTERVAL",
    "SEND_LIMIT",
    "WRAPPED_SEND_APPS",
    "fastapi_app",
    "starlette_app",
    "starlette_app_wrapped_closure",
    "starlette_app_wrapped_method",
    "starlette_app_wrapped_partial",
]

#: Environment variable naming the JSONL file the records are appended to.
RECORDS_ENV = "ASGI_WS_CLOSE_RECORDS"

#: Bound on the handlers' follow-up waits, in seconds: well above any delivery measured in
#: docs/servers.md (daphne's 1006 after an unanswered close comes about 0.7 s later).
FOLLOW_UP_TIMEOUT = 3.0

Handler = Callable[[WebSocket], Awaitable[dict[str, Any]]]


def connection_id(scope: Any) -> str:
    """Return the test-chosen ``id`` query parameter of a connection's scope."""
    query = scope.get("query_string", b"").decode("latin-1")
    ids: list[str] = parse_qs(query).get("id", [""])
    return ids[0]


def _append(line: dict[str, Any]) -> None:
    # One open/append/flush per line: readers poll the file while the server runs.
    with open(os.environ[RECORDS_ENV], "a", encoding="utf-8") as file:
        file.write(json.dumps(line, sort_keys=True) + "\n")
        file.flush()


def _write_handler_record(websocket: WebSocket, app: dict[str, Any]) -> None:
    record = get_close_context(websocket).to_dict()
    line = {"id": connection_id(websocket.scope), "source": "handler", "record": record, "app": app}
    # The scope's "asgi" as the server announced it (the spec 2.5 test checks it took effect).
    _append({**line, "asgi": websocket.scope.get("asgi")})


def on_close(context: CloseContext, scope: Any) -> None:
    """The middleware's hook: one line per connection, after it ended."""
    _append({"id": connection_id(scope), "source": "on_close", "record": context.to_dict()})


def _message_dict(message: Any) -> dict[str, Any]:
    # The raw ASGI message, JSON-safe, keeping the difference between "no key" and a value.
    return {str(key): value for key, value in dict(message).items()}


def _wait(websocket: WebSocket) -> float:
    return float(websocket.query_params.get("wait", FOLLOW_UP_TIMEOUT))


async def _until_disconnect(websocket: WebSocket) -> dict[str, Any]:
    # Raw receive() until websocket.disconnect, bounded (Starlette first hands out
    # websocket.connect when the app closed or denied before it ever received).
    async def loop() -> dict[str, Any]:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return {"disconnect": _message_dict(message)}

    wait = _wait(websocket)
    try:
        return await asyncio.wait_for(loop(), wait)
    except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
        return {"timeout": wait}


def recorded(handler: Handler) -> Callable[[WebSocket], Awaitable[None]]:
    """Write the handler's line with what it returns, or with how it was stopped."""

    @functools.wraps(handler)
    async def endpoint(websocket: WebSocket) -> None:
        try:
            app = await handler(websocket)
        except asyncio.CancelledError:
            _write_handler_record(websocket, {"cancelled": True})
            raise
        except Exception as exc:
            _write_handler_record(websocket, {"raised": f"{type(exc).__name__}: {exc}"})
            raise
        _write_handler_record(websocket, app)

    return endpoint


@recorded
async def echo(websocket: WebSocket) -> dict[str, Any]:
    """Accept, echo text and bytes until the connection ends."""
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return {"disconnect": _message_dict(message)}
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        elif message.get("bytes") is not None:
            await websocket.send_bytes(message["bytes"])


@recorded
async def app_close(websocket: WebSocket) -> dict[str, Any]:
    """Accept, close with ``?code=&reason=``, then receive the follow-up disconnect (bounded)."""
    code = int(websocket.query_params.get("code", "1000"))
    reason = websocket.query_params.get("reason", "")
    await websocket.accept()
    await websocket.close(code=code, reason=reason)
    return await _until_disconnect(websocket)


async def _receive_connect(websocket: WebSocket) -> None:
    message = await websocket.receive()
    if message["type"] != "websocket.connect":
        raise RuntimeError(f"expected websocket.connect first, got {message!r}")


@recorded
async def reject(websocket: WebSocket) -> dict[str, Any]:
    """Close before accept with ``?code=`` (the client gets HTTP 403); with ``?first=receive``,
    only after taking websocket.connect (granian 2.8.9's worker panics when the app sends
    before it received websocket.connect, as Starlette's ``close()`` before accept does)."""
    if websocket.query_params.get("first") == "receive":
        await _receive_connect(websocket)
    await websocket.close(code=int(websocket.query_params.get("code", "1000")))
    return await _until_disconnect(websocket)


@recorded
async def deny(websocket: WebSocket) -> dict[str, Any]:
    """Take websocket.connect, then answer the handshake with a denial response, HTTP 401
    (Starlette raises RuntimeError on a server without the ``websocket.http.response``
    extension)."""
    await _receive_connect(websocket)
    await websocket.send_denial_response(Response(status_code=401))
    return await _until_disconnect(websocket)


@recorded
async def raise_after_accept(websocket: WebSocket) -> dict[str, Any]:
    """Accept, then raise."""
    await websocket.accept()
    raise RuntimeError("boom from the app")


@recorded
async def raise_before_accept(websocket: WebSocket) -> dict[str, Any]:
    """Raise before accepting (servers answer HTTP 500)."""
    raise RuntimeError("boom before accept")


@recorded
async def return_after_accept(websocket: WebSocket) -> dict[str, Any]:
    """Accept, then return without closing; the handler records the live (open) context."""
    await websocket.accept()
    return {"returned": True}


#: The send-only route sends at most this many messages, one every :data:`SEND_INTERVAL`
#: seconds (about 3 s in all).
SEND_LIMIT = 60
SEND_INTERVAL = 0.05


@recorded
async def send_only(websocket: WebSocket) -> dict[str, Any]:
    """Accept, then only send, never receive(): a text message every :data:`SEND_INTERVAL`
    seconds until send() raises or :data:`SEND_LIMIT` were sent; then return, saying which
    (``{"raised": ..., "sent": N}`` or ``{"returned": true, "sent": N}``, N the sends that
    returned)."""
    await websocket.accept()
    sent = 0
    while sent < SEND_LIMIT:
        try:
            await websocket.send_text(f"tick {sent}")
        except Exception as exc:
            return {"raised": f"{type(exc).__name__}: {exc}", "sent": sent}
        sent += 1
        # The pace of an app that pushes updates; the number of ticks bounds the whole run.
        await asyncio.sleep(SEND_INTERVAL)
    return {"returned": True, "sent": sent}


@recorded
async def wait_before_accept(websocket: WebSocket) -> dict[str, Any]:
    """Take websocket.connect, say so in a ``waiting`` line, then wait (bounded) for the end."""
    await _receive_connect(websocket)
    _append({"id": connection_id(websocket.scope), "source": "waiting"})
    return await _until_disconnect(websocket)


ROUTES: dict[str, Callable[[WebSocket], Awaitable[None]]] = {
    "/ws/echo": echo,
    "/ws/app-close": app_close,
    "/ws/reject": reject,
    "/ws/deny": deny,
    "/ws/raise": raise_after_accept,
    "/ws/raise-before-accept": raise_before_accept,
    "/ws/return": return_after_accept,
    "/ws/wait-before-accept": wait_before_accept,
    "/ws/send-only": send_only,
}

# Counting on: the matrix records messages_received / messages_sent on every server. (The
# default, uncounted path runs on real servers in the policy, framework and observability tiers.)
starlette_app = Starlette(routes=[WebSocketRoute(path, func) for path, func in ROUTES.items()])
starlette_app.add_middleware(WebSocketCloseMiddleware, on_close=on_close, count_messages=True)

fastapi_app = FastAPI()
for _path, _func in ROUTES.items():
    fastapi_app.add_api_websocket_route(_path, _func)
fastapi_app.add_middleware(WebSocketCloseMiddleware, on_close=on_close, count_messages=True)


# The same Starlette app behind a middleware OUTSIDE WebSocketCloseMiddleware that wraps
# ``send``, the way tracing and error-reporting middleware do: the middleware then sees the
# wrapper, not the server's own send (server detection has to do without it). Three shapes.

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class ClosureSendWrapper:
    """Hands the app a closure around ``send`` (what OpenTelemetry's and Sentry's ASGI
    middleware do)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def wrapped_send(message: Any) -> None:
            await send(message)

        await self.app(scope, receive, wrapped_send)


async def _forward(send: Any, message: Any) -> None:
    await send(message)


class PartialSendWrapper:
    """Hands the app ``functools.partial(_forward, send)``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, functools.partial(_forward, send))


class _SendForwarder:
    # Another object whose bound method forwards to the server's send.
    def __init__(self, send: Any) -> None:
        self._send = send

    async def send(self, message: Any) -> None:
        await self._send(message)


class MethodSendWrapper:
    """Hands the app a bound method of another object (``_SendForwarder(send).send``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, _SendForwarder(send).send)


def _wrapped_send_app(wrapper: type[ClosureSendWrapper | PartialSendWrapper | MethodSendWrapper]) -> Starlette:
    app = Starlette(routes=[WebSocketRoute(path, func) for path, func in ROUTES.items()])
    app.add_middleware(WebSocketCloseMiddleware, on_close=on_close, count_messages=True)
    # Added last, so outermost: WebSocketCloseMiddleware gets the wrapper's send.
    app.add_middleware(wrapper)
    return app


starlette_app_wrapped_closure = _wrapped_send_app(ClosureSendWrapper)
starlette_app_wrapped_partial = _wrapped_send_app(PartialSendWrapper)
starlette_app_wrapped_method = _wrapped_send_app(MethodSendWrapper)

#: The wrapped-send variants of ``starlette_app`` (``tests/test_wrapped_send.py``), by name:
#: the app reference each server loads. Not matrix apps.
WRAPPED_SEND_APPS: dict[str, str] = {
    "closure": "tests.support.serverapp:starlette_app_wrapped_closure",
    "partial": "tests.support.serverapp:starlette_app_wrapped_partial",
    "method": "tests.support.serverapp:starlette_app_wrapped_method",
}
