"""Starlette apps for the real-server tests of the close policies (tests/test_policies_servers.py).

One app per policy configuration, ``tests.support.policyapp:<name>_app``:

* ``default_app``: no policy (``invalid_close="pass"``), the baseline every policy is compared to;
* ``fix_app``: ``invalid_close="fix"``;
* ``raise_app``: ``invalid_close="raise"``;
* ``error_app``: ``close_on_error=True``;
* ``reject_app``: ``reject_with_close_code=True``;
* ``raise_error_app``: ``invalid_close="raise"`` and ``close_on_error=True`` (a refused close
  that the app lets escape becomes a 1011);
* ``reject_fix_app``: ``reject_with_close_code=True`` and ``invalid_close="fix"`` (a rejection
  with an invalid close is repaired before it goes out).

They all serve the same routes, and each can be run on its own. The tests run
``tests.support.policyapp:app``: it hands each connection, untouched (same scope, receive and send), to
the app its ``?app=`` query parameter names (``default``, ``fix``, ...), so that one uvicorn
per WebSocket implementation serves every configuration. Every connection carries a
test-chosen ``id`` query parameter; the handler (once it has seen what it waits for) and the
``on_close`` hook each append one JSON line,
``{"id": ..., "source": "handler" | "on_close", "record": CloseContext.to_dict(), ...}``, to
the file named by the ``ASGI_WS_CLOSE_RECORDS`` environment variable (the one
``tests/support/servers.py`` sets). The handler's line also says what the app saw: the exception a
``send()`` raised (``send_error``) and the follow-up ``websocket.disconnect`` (``disconnect``).

Where Starlette would refuse a message itself (a second close, a send after close), the
handlers call the raw ASGI ``send`` that Starlette wraps (``websocket._send``: the middleware's
tracked send), so that the middleware and the server are the ones that answer.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware, get_close_context
from tests.support.serverapp import RECORDS_ENV

__all__ = [
    "APPS",
    "RECORDS_ENV",
    "ROUTES",
    "app",
    "default_app",
    "error_app",
    "fix_app",
    "raise_app",
    "raise_error_app",
    "reject_app",
    "reject_fix_app",
]

# Bound on the handlers' own waits for the follow-up disconnect.
_FOLLOW_UP_TIMEOUT = 5.0


def _query_param(scope: Any, name: str) -> str:
    values: list[str] = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name, [""])
    return values[0]


def connection_id(scope: Any) -> str:
    """Return the test-chosen ``id`` query parameter of a connection's scope."""
    return _query_param(scope, "id")


def _append(line: dict[str, Any]) -> None:
    # One open/append/flush per line: the tests poll the file while the server runs.
    with open(os.environ[RECORDS_ENV], "a", encoding="utf-8") as file:
        file.write(json.dumps(line, sort_keys=True) + "\n")
        file.flush()


def _error_dict(exc: BaseException) -> dict[str, str]:
    cls = type(exc)
    return {"type": f"{cls.__module__}.{cls.__qualname__}", "message": str(exc)}


def _message_dict(message: Message) -> dict[str, Any]:
    # The raw ASGI message, JSON-safe, keeping the difference between "no key" and a value.
    return {str(key): value for key, value in dict(message).items()}


def _write_handler_record(websocket: WebSocket, **extra: Any) -> None:
    record = get_close_context(websocket).to_dict()
    _append({"id": connection_id(websocket.scope), "source": "handler", "record": record, **extra})


def on_close(context: CloseContext, scope: Any) -> None:
    """The middleware's hook: one line per connection, after it ended."""
    _append({"id": connection_id(scope), "source": "on_close", "record": context.to_dict()})


async def _until_disconnect(websocket: WebSocket) -> dict[str, Any]:
    # Raw receive() until websocket.disconnect (Starlette first hands out websocket.connect
    # when the app closed before it ever received).
    async def loop() -> dict[str, Any]:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return _message_dict(message)

    return await asyncio.wait_for(loop(), _FOLLOW_UP_TIMEOUT)


async def raw_send(websocket: WebSocket, message: Message) -> None:
    """The ASGI ``send`` under Starlette's checks: the middleware's, then the server's."""
    await websocket._send(message)


def _close_params(websocket: WebSocket) -> tuple[int, str]:
    return int(websocket.query_params.get("code", "1000")), websocket.query_params.get("reason", "")


async def app_close(websocket: WebSocket) -> None:
    """Accept, close with ``?code=&reason=``; ``?on_error=`` says what to do if send() raises.

    * ``return`` (the default): record the error and return, without waiting (after a refused
      close, some servers never deliver a disconnect);
    * ``fallback``: close again with 1000 (raw ASGI send: Starlette refuses a second close),
      then wait for the disconnect;
    * ``propagate``: record the error and let it escape to the middleware and the server.

    When the close went through, wait for the follow-up disconnect and record it.
    """
    code, reason = _close_params(websocket)
    on_error = websocket.query_params.get("on_error", "return")
    await websocket.accept()
    try:
        await websocket.close(code=code, reason=reason)
    except Exception as exc:
        error = _error_dict(exc)
        if on_error == "fallback":
            await raw_send(websocket, {"type": "websocket.close", "code": 1000, "reason": ""})
            _write_handler_record(websocket, send_error=error, disconnect=await _until_disconnect(websocket))
            return
        _write_handler_record(websocket, send_error=error)
        if on_error == "propagate":
            raise
        return
    _write_handler_record(websocket, send_error=None, disconnect=await _until_disconnect(websocket))


async def raise_after_accept(websocket: WebSocket) -> None:
    """Accept, then raise (no handler record: the handler never sees the end)."""
    await websocket.accept()
    raise RuntimeError("boom from the app")


async def reject(websocket: WebSocket) -> None:
    """Close before accept with ``?code=&reason=``, then wait for the disconnect."""
    code, reason = _close_params(websocket)
    await websocket.close(code=code, reason=reason)
    _write_handler_record(websocket, disconnect=await _until_disconnect(websocket))


async def send_after_close(websocket: WebSocket) -> None:
    """Accept, close with 1000, then send text through the raw ASGI send; record the error."""
    await websocket.accept()
    await websocket.close(code=1000)
    error: dict[str, str] | None = None
    try:
        await raw_send(websocket, {"type": "websocket.send", "text": "late"})
    except Exception as exc:  # the server's refusal: what each server raises is the point
        error = _error_dict(exc)
    _write_handler_record(websocket, send_error=error, disconnect=await _until_disconnect(websocket))


ROUTES: dict[str, Callable[[WebSocket], Awaitable[None]]] = {
    "/ws/close": app_close,
    "/ws/raise": raise_after_accept,
    "/ws/reject": reject,
    "/ws/send-after-close": send_after_close,
}


def make_app(**options: Any) -> Starlette:
    """A Starlette app with every route, wrapped the way users add the middleware."""
    starlette_app = Starlette(routes=[WebSocketRoute(path, func) for path, func in ROUTES.items()])
    starlette_app.add_middleware(WebSocketCloseMiddleware, on_close=on_close, **options)
    return starlette_app


#: The policy configuration of each app, by the name the tests use.
APPS: dict[str, dict[str, Any]] = {
    "default": {},
    "fix": {"invalid_close": "fix"},
    "raise": {"invalid_close": "raise"},
    "error": {"close_on_error": True},
    "reject": {"reject_with_close_code": True},
    "raise_error": {"invalid_close": "raise", "close_on_error": True},
    "reject_fix": {"reject_with_close_code": True, "invalid_close": "fix"},
}

default_app = make_app(**APPS["default"])
fix_app = make_app(**APPS["fix"])
raise_app = make_app(**APPS["raise"])
error_app = make_app(**APPS["error"])
reject_app = make_app(**APPS["reject"])
raise_error_app = make_app(**APPS["raise_error"])
reject_fix_app = make_app(**APPS["reject_fix"])

_BY_NAME: dict[str, Starlette] = {
    "default": default_app,
    "fix": fix_app,
    "raise": raise_app,
    "error": error_app,
    "reject": reject_app,
    "raise_error": raise_error_app,
    "reject_fix": reject_fix_app,
}
assert _BY_NAME.keys() == APPS.keys()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Every configuration in one process: ``?app=<name>`` picks the app, ``default`` if none.

    The connection is passed on untouched, so the middleware still sees the server's own
    ``send`` (and detects the server by it). Lifespan goes to ``default_app``.
    """
    if scope["type"] == "lifespan":
        await default_app(scope, receive, send)
        return
    name = _query_param(scope, "app") or "default"
    try:
        target = _BY_NAME[name]
    except KeyError:
        raise LookupError(f"no app configuration {name!r}; known: {sorted(_BY_NAME)}") from None
    await target(scope, receive, send)
