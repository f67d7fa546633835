"""The demo app: FastAPI with :class:`~asgi_ws_close.WebSocketCloseMiddleware`, and a page to drive it.

Routes (everything the page needs is served from this package: no CDN, no network):

* ``/``: the page (``static/index.html``), with its script, style sheet and icon under ``/static``;
* ``/ws``: the demo socket. It echoes what it receives; the text
  ``{"action": "close", "code": 4003, "reason": "nope"}`` (or ``close 4003 nope``) asks the
  server to close with that code and reason;
* ``/ws/reject``: closes before accepting, so the browser sees the handshake fail (HTTP 403);
* ``/ws/monitor``: the page's live feed: a snapshot of the records, then one message per close.
  Its own connections are not recorded;
* ``/api/closes``: the recent close records, newest first, and which server runs the demo.

Each record is the connection's :meth:`~asgi_ws_close.CloseContext.to_dict`, plus an ``id``,
the ``path``, the ``cid`` the page gave the connection (``?cid=``), and ``code_name``.
Reasons come from the peer: the page renders every field with ``textContent``, never as HTML.

Run it with ``python -m examples.demo`` (see ``__main__.py``), or with any ASGI server:
``uvicorn examples.demo.app:app``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import sys
from collections import deque
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from asgi_ws_close import CloseCode, CloseContext, WebSocketCloseMiddleware

__all__ = ["MAX_RECORDS", "CloseStore", "ServerInfo", "app", "create_app", "parse_close_command"]

logger = logging.getLogger("examples.demo")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Record = dict[str, Any]

STATIC_DIR = Path(__file__).resolve().parent / "static"

#: How many close records the app keeps (and the page shows).
MAX_RECORDS = 50
#: Records a monitor may lag behind before it is dropped (the page then reconnects).
MONITOR_BUFFER = 100
#: The page gives each connection an id (``?cid=``); longer ones are cut.
MAX_CID_LENGTH = 64

MONITOR_PATH = "/ws/monitor"
#: Connections whose close is not recorded: the page's own live feed would flood the table.
UNRECORDED_PATHS = frozenset({MONITOR_PATH})

REJECT_CLOSE = (CloseCode.POLICY_VIOLATION, "rejected by the demo")

# The page loads nothing from anywhere else; the browser enforces it. ('self' covers ws://
# to the same host and port.)
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# uvicorn's WebSocket implementations, by the module of the protocol class that serves the
# connection: (the --ws name, the distribution that does the WebSocket protocol work).
_UVICORN_WS_IMPLEMENTATIONS = {
    "uvicorn.protocols.websockets.websockets_impl": ("websockets", "websockets"),
    "uvicorn.protocols.websockets.websockets_sansio_impl": ("websockets-sansio", "websockets"),
    "uvicorn.protocols.websockets.wsproto_impl": ("wsproto", "wsproto"),
}


def _version_of(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class ServerInfo:
    """Which server and WebSocket implementation run the demo, for the page to say.

    ``ws_option`` is what the launcher asked for (``--ws auto``), when it is known. The rest is
    learnt from the first WebSocket connection: the ASGI server hands the app its protocol
    object's bound ``send``, whose class names the implementation that really runs.
    """

    ws_option: str | None = None
    server: str | None = None
    server_version: str | None = None
    ws_implementation: str | None = None
    ws_library: str | None = None
    ws_library_version: str | None = None

    def __post_init__(self) -> None:
        if self.server is None and "uvicorn" in sys.modules:
            # Before any WebSocket: the server that imported us is a good first guess.
            self.server = "uvicorn"
            self.server_version = _version_of("uvicorn")

    def learn_from(self, send: Any) -> None:
        """Identify the server and WebSocket implementation from the server's ``send``."""
        owner = getattr(send, "__self__", None)
        if owner is None:
            return
        module = type(owner).__module__
        server = module.partition(".")[0]
        self.server = server
        self.server_version = _version_of(server)
        implementation, library = _UVICORN_WS_IMPLEMENTATIONS.get(module, (type(owner).__qualname__, server))
        self.ws_implementation = implementation
        self.ws_library = library
        self.ws_library_version = _version_of(library)

    def to_dict(self) -> dict[str, str | None]:
        """The facts, and ``summary``: one line for people."""
        return {
            "server": self.server,
            "server_version": self.server_version,
            "ws_option": self.ws_option,
            "ws_implementation": self.ws_implementation,
            "ws_library": self.ws_library,
            "ws_library_version": self.ws_library_version,
            "summary": self.summary(),
        }

    def summary(self) -> str:
        """E.g. ``uvicorn 0.54.0 · WebSocket: websockets-sansio (--ws auto), websockets 17.4``."""
        server = " ".join(part for part in (self.server, self.server_version) if part) or "an unknown ASGI server"
        if self.ws_implementation is None:
            return f"{server} · WebSocket: not known yet"
        library = " ".join(part for part in (self.ws_library, self.ws_library_version) if part)
        chosen = f" (--ws {self.ws_option})" if self.ws_option and self.ws_option != self.ws_implementation else ""
        return f"{server} · WebSocket: {self.ws_implementation}{chosen}, {library}"


def _cid_of(scope: Scope) -> str | None:
    query = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(query).get("cid")
    return values[0][:MAX_CID_LENGTH] if values else None


def _code_name(code: int | None) -> str | None:
    if code is None:
        return None
    try:
        return CloseCode(code).name
    except ValueError:
        return None  # unregistered: the record's code_explanation says "private use" etc.


class CloseStore:
    """The last :data:`MAX_RECORDS` close records, and the monitors that want each new one.

    :meth:`on_close` is the middleware's ``on_close`` hook. It runs on the event loop, after the
    connection ended: it only appends to a bounded deque and hands the record to the monitors'
    bounded streams, so a slow page can never hold up a connection or grow memory.
    """

    def __init__(self, max_records: int = MAX_RECORDS) -> None:
        self.max_records = max_records
        self._records: deque[Record] = deque(maxlen=max_records)
        self._next_id = 1
        self._monitors: set[MemoryObjectSendStream[Record]] = set()

    def records(self) -> list[Record]:
        """The records kept, newest first."""
        return list(self._records)

    def on_close(self, context: CloseContext, scope: Scope) -> None:
        """Store the record of a connection that ended, and push it to the monitors."""
        path = scope.get("path", "")
        if path in UNRECORDED_PATHS:
            return
        record: Record = {
            "id": self._next_id,
            "path": path,
            "cid": _cid_of(scope),
            **context.to_dict(),
            "code_name": _code_name(context.code),
        }
        self._next_id += 1
        self._records.appendleft(record)
        for monitor in list(self._monitors):
            try:
                monitor.send_nowait(record)
            except anyio.WouldBlock:
                # This page is not reading: drop it (it reconnects and gets a fresh snapshot)
                # rather than buffer without bound.
                monitor.close()
                self._monitors.discard(monitor)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._monitors.discard(monitor)

    @contextlib.contextmanager
    def subscription(self) -> Iterator[MemoryObjectReceiveStream[Record]]:
        """A stream of the records stored from now on, while the ``with`` block runs."""
        sender, receiver = anyio.create_memory_object_stream[Record](MONITOR_BUFFER)
        self._monitors.add(sender)
        try:
            with receiver:
                yield receiver
        finally:
            self._monitors.discard(sender)
            sender.close()


def log_close(context: CloseContext, scope: Scope) -> None:
    """Log one line per connection; the reason is JSON-quoted (it is the peer's text)."""
    level = logging.INFO if context.clean else logging.WARNING
    logger.log(
        level,
        "%s cid=%s: %s, initiator=%s code=%s reason=%s clean=%s",
        scope.get("path"),
        json.dumps(_cid_of(scope)),
        context.state.name,
        context.initiator,
        context.code,
        json.dumps(context.reason, ensure_ascii=True),
        context.clean,
    )


def parse_close_command(text: str) -> tuple[int, str] | None:
    """Read a "close" command from the page: ``(code, reason)``, or ``None`` if it is not one.

    ``{"action": "close", "code": 4003, "reason": "nope"}`` (code and reason optional: 1000 and
    ``""``, ASGI's defaults) or the typed form ``close 4003 nope``. The code is not checked
    here: ``invalid_close="fix"`` repairs codes and reasons that cannot go on the wire.
    """
    if text.startswith("{"):
        try:
            command = json.loads(text)
        except ValueError:
            return None
        if not isinstance(command, dict) or command.get("action") != "close":
            return None
        code, reason = command.get("code", 1000), command.get("reason", "")
        if code is None:
            code = 1000
        if isinstance(code, bool) or not isinstance(code, int) or not isinstance(reason, str):
            return None
        return code, reason
    word, _, rest = text.partition(" ")
    if word != "close":
        return None
    code_text, _, reason = rest.partition(" ")
    try:
        return (int(code_text) if code_text else 1000), reason
    except ValueError:
        return None


class _ServerDetector:
    # Outermost of the app's middleware: for a websocket scope, the send it gets is still the
    # server's own (Starlette's error middleware passes websockets through untouched).
    def __init__(self, app: Any, info: ServerInfo) -> None:
        self.app = app
        self.info = info

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and self.info.ws_implementation is None:
            self.info.learn_from(send)
        await self.app(scope, receive, send)


class _SecurityHeaders:
    # Pure ASGI, so that it never touches websocket scopes.
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                # The demo changes as you edit it: never serve a stale script.
                headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(*, ws_option: str | None = None, max_records: int = MAX_RECORDS) -> FastAPI:
    """Build the demo app.

    Args:
        ws_option: The ``--ws`` choice the launcher gave uvicorn, for the page to show.
        max_records: How many close records to keep.
    """
    store = CloseStore(max_records)
    info = ServerInfo(ws_option=ws_option)
    app = FastAPI(title="asgi-ws-close demo", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.server_info = info
    # invalid_close="fix": a code typed on the page that cannot go on the wire (say 999) is
    # replaced by 1011 instead of failing the connection; the record keeps what was asked
    # ("requested") and what went out ("sent"). count_messages=True: the page shows how many
    # messages went each way (off by default: it is most of the middleware's per-message cost).
    app.add_middleware(
        WebSocketCloseMiddleware, on_close=[store.on_close, log_close], invalid_close="fix", count_messages=True
    )
    app.add_middleware(_SecurityHeaders)
    app.add_middleware(_ServerDetector, info=info)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/closes")
    async def closes() -> JSONResponse:
        """The recent close records, newest first, and the server that runs the demo."""
        return JSONResponse({"server": info.to_dict(), "limit": store.max_records, "records": store.records()})

    @app.websocket("/ws")
    async def demo_socket(websocket: WebSocket) -> None:
        """Echo text and bytes; a close command makes the server close."""
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return  # the browser closed, or went away: the record says how
                text = message.get("text")
                if text is None:
                    await websocket.send_bytes(message.get("bytes") or b"")
                    continue
                command = parse_close_command(text)
                if command is None:
                    await websocket.send_text(text)
                    continue
                await websocket.close(*command)
                return
        except WebSocketDisconnect:
            return  # an echo raced with the browser's close: nothing left to do

    @app.websocket("/ws/reject")
    async def reject(websocket: WebSocket) -> None:
        """Close before accepting: the server answers the handshake with HTTP 403."""
        code, reason = REJECT_CLOSE
        await websocket.close(code, reason)

    @app.websocket(MONITOR_PATH)
    async def monitor(websocket: WebSocket) -> None:
        """Send the page a snapshot of the records, then each new one, until it leaves."""
        await websocket.accept()
        with store.subscription() as records:
            try:
                await websocket.send_json(_snapshot(store, info))
            except WebSocketDisconnect:
                return
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_forward_records, websocket, records, info)
                # The page never sends anything that matters: wait for it to leave.
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass
                tasks.cancel_scope.cancel()

    return app


def _snapshot(store: CloseStore, info: ServerInfo) -> dict[str, Any]:
    return {"type": "snapshot", "server": info.to_dict(), "limit": store.max_records, "records": store.records()}


async def _forward_records(websocket: WebSocket, records: MemoryObjectReceiveStream[Record], info: ServerInfo) -> None:
    async for record in records:
        try:
            await websocket.send_json({"type": "record", "server": info.to_dict(), "record": record})
        except WebSocketDisconnect:
            return  # the page left: the receiving side ends the monitor
    # The store dropped this monitor because it fell behind: the page reconnects on 1013.
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "monitor fell behind")


#: The app, for ``uvicorn examples.demo.app:app`` (``python -m examples.demo`` builds its own).
app = create_app()
