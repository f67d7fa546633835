"""Capture close records in your own tests, with an in-process client.

Wrap the app under test for the duration of a `with` block, drive it with Starlette's (or
FastAPI's, or Litestar's) `TestClient`, then assert on the records of the connections that
ended, frozen `CloseRecord` snapshots:

```python
from asgi_ws_close import Close
from asgi_ws_close.testing import capture_closes

# In a test, with client = TestClient(app): "a bad token is refused with 4403 'forbidden'".
with capture_closes(app) as closes, pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws?token=bad"):
    pass
assert closes.last.sent == Close(4403, "forbidden")
```

(A close before accept is a rejected handshake: the client gets HTTP 403, so the record's
`code` is 1006, as a browser reports it, and `sent` is the app's close. After accept,
`closes.last.code` and `closes.last.reason` are the app's.)

`capture_closes` works whether or not the app has
`WebSocketCloseMiddleware`, and never changes what the app sees: it
adds no scope key, no context variable and no close policy. When the app has the middleware,
the record is the app's own context, as its `on_close` hooks saw it; when it has not, the
capture keeps a record of its own from the messages it sees pass.

Limits of in-process clients (what a record under `TestClient` cannot show; test those with
a real server):

* No lost transport, so no 1006 from the network: `TestClient` ends a session with a
  `websocket.disconnect` that always carries a code (`close(code, reason)`, and 1000 at the
  end of the `with websocket_connect(...)` block if the app still runs). Send
  `{"type": "websocket.disconnect", "code": 1006}` with `session.send(...)` to simulate one.
* No server of its own: no 1012 on shutdown, no protocol errors or size limits (initiator
  `"server"`), no HTTP 403 on the wire for a close before accept: `websocket_connect`
  raises `WebSocketDisconnect(code, reason)` with the app's code instead, while the record
  says REJECTED with `http_status` 403, as a real server would answer.
* No post-close disconnect: after the app's `websocket.close`, uvicorn at once answers with a
  `websocket.disconnect` of its own; `TestClient` sends nothing until the session's block
  ends (its 1000 then, or the task is cancelled). A handler that awaits `receive()` after
  closing waits until then. The record is the same (the app's code, initiator `"app"`).
* An exception from the app is re-raised in the test by `TestClient`; under uvicorn the
  client sees 1006 (or 1011 with `close_on_error=True`). The record has it in `error`.
* Litestar's `TestClient` sends no reason with `close(code)`, so the record's reason is
  `""`; used as a context manager (`with TestClient(app) as client`), it does not wait
  for the app to finish when a session ends: call `CloseCapture.wait()` before reading.

Records appear when the app's task ends (after the middleware's `on_close` hooks). With
Starlette's `TestClient` that is by the time a `websocket_connect` block exits, or by the
time `websocket_connect` raises for a rejected handshake.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ._context import SCOPE_KEY
from ._middleware import WebSocketCloseMiddleware, _app_ended, _CountingConnection
from ._record import CloseContext, CloseRecord
from ._servers import GENERIC
from ._types import ASGIApp, Receive, Scope, Send, WebSocketObserver

__all__ = ["CloseCapture", "capture_closes"]

#: How long `CloseCapture.wait()` waits by default, in seconds.
DEFAULT_WAIT_TIMEOUT = 5.0


class CloseCapture:
    """The records of the WebSocket connections that ended while capturing, oldest first.

    `capture_closes` makes one and instruments the app in place; for any other ASGI
    app, make one yourself and drive `capture.wrap(app)` instead of `app`. The app may
    run in another thread (`TestClient` runs it in one): the methods are thread-safe.
    """

    def __init__(self) -> None:
        self._records: list[CloseRecord] = []
        self._changed = threading.Condition()

    @property
    def records(self) -> list[CloseRecord]:
        """A copy of the records captured so far, in the order the connections ended."""
        with self._changed:
            return list(self._records)

    @property
    def last(self) -> CloseRecord:
        """The record of the connection that ended last.

        Raises:
            AssertionError: no connection has ended yet.
        """
        with self._changed:
            if self._records:
                return self._records[-1]
        raise AssertionError(
            "No WebSocket connection has ended while capturing: did the test open one, and has it "
            "ended? (With a client that runs the app in a thread and does not wait for it, such as "
            "Litestar's TestClient used as a context manager, call capture.wait() first.)"
        )

    def wait(self, count: int = 1, timeout: float = DEFAULT_WAIT_TIMEOUT) -> CloseRecord:
        """Block until `count` connections in all have ended; return the last record.

        For clients that run the app in another thread. Do not call it from the event loop
        that runs the app: nothing could end while it blocks.

        Raises:
            AssertionError: fewer than `count` connections ended within `timeout` seconds.
            RuntimeError: called from a running event loop.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "CloseCapture.wait() blocks its thread, and was called from a running event loop: "
                "await the end of the connection with your client instead, then read capture.last"
            )
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._records) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(self._records)} WebSocket connection(s) ended within {timeout} s, expected {count}"
                    )
                self._changed.wait(left)
            return self._records[-1]

    def clear(self) -> None:
        """Forget the records captured so far."""
        with self._changed:
            self._records.clear()

    def __len__(self) -> int:
        with self._changed:
            return len(self._records)

    def __iter__(self) -> Iterator[CloseRecord]:
        return iter(self.records)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Return an ASGI app that runs `app` and captures the record of every connection."""
        return _CaptureApp(app, self)

    def _add(self, record: CloseRecord) -> None:
        with self._changed:
            self._records.append(record)
            self._changed.notify_all()

    def _hook(self, context: CloseContext, scope: Scope) -> None:
        # Used as an on_close hook: the context is final by then.
        self._add(context.snapshot())


@contextmanager
def capture_closes(app: Any) -> Iterator[CloseCapture]:
    """Capture the close records of `app`'s WebSocket connections, in place, while in the block.

    Supported in place: Starlette and FastAPI apps (the capture wraps the app's middleware
    stack, built now if the app has not run yet, as Starlette would on its first call),
    Litestar apps (the capture wraps `app.asgi_handler`), and
    `WebSocketCloseMiddleware` instances (the capture adds an
    `on_close` hook). Everything is restored when the block exits, so clients made before
    the block (a `TestClient` fixture) are captured too.

    Args:
        app: The app under test, the very object your client drives.

    Raises:
        TypeError: `app` is none of those: use `CloseCapture().wrap(app)` and drive that.
    """
    capture = CloseCapture()
    if isinstance(app, WebSocketCloseMiddleware):
        # Outside of it, the capture would read the context before the middleware finished it.
        hooks = app.hooks
        app.hooks = (*hooks, capture._hook)
        try:
            yield capture
        finally:
            app.hooks = hooks
    elif callable(getattr(app, "build_middleware_stack", None)) and hasattr(app, "middleware_stack"):
        # Starlette builds its stack on the first call; building it now is what that call
        # would do, and keeps the user's middleware instances after the block.
        stack = app.middleware_stack or app.build_middleware_stack()
        app.middleware_stack = capture.wrap(stack)
        try:
            yield capture
        finally:
            app.middleware_stack = stack
    elif type(app).__module__.startswith("litestar") and hasattr(app, "asgi_handler"):
        handler = app.asgi_handler
        app.asgi_handler = capture.wrap(handler)
        try:
            yield capture
        finally:
            app.asgi_handler = handler
    else:
        raise TypeError(
            f"capture_closes() instruments Starlette, FastAPI and Litestar apps and WebSocketCloseMiddleware "
            f"in place, not {type(app).__name__}: make a capture = CloseCapture() and drive "
            "capture.wrap(app) with your client instead"
        )


class _CaptureApp(WebSocketObserver):
    # An observer, not a middleware: the app gets the same scope, and the capture's own
    # tracker is only read when the app has no context of its own.
    def __init__(self, app: ASGIApp, capture: CloseCapture) -> None:
        super().__init__(app)
        self.capture = capture

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The middleware's own bookkeeping, so that a capture without it reads the same.
        tracker = _CountingConnection((GENERIC, None), None, None, receive, send, ())
        try:
            await self.app(scope, tracker.receive_with_tracking, tracker.send_with_tracking)
        except BaseException as exc:
            _app_ended(tracker, exc)
            raise
        else:
            _app_ended(tracker, None)
        finally:
            tracker._detach()
            # The app's middleware shares this scope dict (Starlette and Litestar do not copy
            # it) and has finished with its context by now, hooks included.
            context = scope.get(SCOPE_KEY)
            if not isinstance(context, CloseContext):
                context = tracker
            self.capture._add(context.snapshot())
