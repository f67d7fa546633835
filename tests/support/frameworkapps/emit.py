"""How the framework apps report what they saw (one JSON line on stdout per observation), and
the conversation that each of them has (:func:`echo_until_close`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

from asgi_ws_close import CloseContext

__all__ = ["PREFIX", "collect", "echo_until_close", "emit", "on_close", "tag_of"]

#: Marks the lines that :class:`~tests.support.frameworkapps.server.Server` parses.
PREFIX = "ASGI_WS_CLOSE_OBSERVED "

# In-process tests collect the lines instead (see collect()).
_sinks: list[Callable[[dict[str, Any]], None]] = []


def tag_of(scope: Mapping[str, Any]) -> str:
    """The test-chosen ``tag`` query parameter that names a connection."""
    query = scope.get("query_string", b"").decode("latin-1")
    return parse_qs(query).get("tag", [""])[0]


def emit(source: str, scope: Mapping[str, Any], context: CloseContext, **extra: Any) -> None:
    """Print what ``source`` (a handler, or the hook) read from the context of a connection."""
    line = {"source": source, "tag": tag_of(scope), "path": scope.get("path"), "record": context.to_dict(), **extra}
    if _sinks:
        _sinks[-1](line)
        return
    # One write per line, flushed: the test reads the pipe while the server runs.
    sys.stdout.write(PREFIX + json.dumps(line, sort_keys=True) + "\n")
    sys.stdout.flush()


async def echo_until_close(websocket: Any) -> None:
    """Echo text until "close" comes: then close with 4003 "nope" and wait for the server's
    answer (uvicorn answers the app's close with a disconnect). The framework's
    ``WebSocketDisconnect`` propagates if the client ends first. Starlette's, FastAPI's and
    Litestar's WebSocket objects all have the methods used here."""
    while True:
        text = await websocket.receive_text()
        if text == "close":
            await websocket.close(4003, "nope")
            await websocket.receive()
            return
        await websocket.send_text(text)


def on_close(context: CloseContext, scope: Any) -> None:
    """The middleware's on_close hook of every framework app."""
    emit("on_close", scope, context)


@contextmanager
def collect() -> Iterator[list[dict[str, Any]]]:
    """Collect the lines emitted in this process while in the block, instead of printing them."""
    lines: list[dict[str, Any]] = []
    _sinks.append(lines.append)
    try:
        yield lines
    finally:
        _sinks.remove(lines.append)
