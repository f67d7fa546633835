"""A pytest plugin for Starlette's and uvicorn's own test suites (``.ci/upstream-suites``).

Every app those suites drive is wrapped in `WebSocketCloseMiddleware`, outermost, with an
``on_close`` hook that builds the whole record (``to_dict()``, ``snapshot()``, ``str()``):
Starlette's through its ``TestClient``'s transport, uvicorn's after ``Config.load()`` (past
uvicorn's own wrappers). A test fails if a hook raised, or if its WebSocket connections did
not get one record each; the summary line gives the totals (every xdist worker's). The suites'
own assertions do the rest: the middleware must change nothing they can see.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware

_records: list[dict[str, Any]] = []
_errors: list[BaseException] = []
_totals = {"connections": 0, "records": 0}


def _hook(context: CloseContext, scope: Any) -> None:
    try:
        _records.append(context.to_dict())
        context.snapshot()
        str(context)
    except BaseException as exc:  # the test fails on it, in _every_record_built
        _errors.append(exc)


class _Wrapped:
    """The middleware, with a count of the WebSocket connections it saw."""

    def __init__(self, app: Any) -> None:
        self.app = WebSocketCloseMiddleware(app, on_close=_hook)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            _totals["connections"] += 1
        return await self.app(scope, receive, send)


def _wrap_starlette() -> None:
    try:
        import starlette.testclient as testclient
    except ImportError:  # not Starlette's suite
        return
    init = testclient._TestClientTransport.__init__

    def wrapped_init(self: Any, app: Any, *args: Any, **kwargs: Any) -> None:
        init(self, _Wrapped(app), *args, **kwargs)

    testclient._TestClientTransport.__init__ = wrapped_init  # type: ignore[method-assign]


def _wrap_uvicorn() -> None:
    try:
        import uvicorn.config
    except ImportError:  # not uvicorn's suite
        return
    load = uvicorn.config.Config.load

    def wrapped_load(self: Any) -> None:
        load(self)
        if not isinstance(self.loaded_app, _Wrapped):
            self.loaded_app = _Wrapped(self.loaded_app)

    uvicorn.config.Config.load = wrapped_load  # type: ignore[method-assign]


_wrap_starlette()
_wrap_uvicorn()


@pytest.fixture(autouse=True)
def _every_record_built() -> Iterator[None]:
    _records.clear()
    _errors.clear()
    before = _totals["connections"]
    yield
    assert not _errors, _errors
    # Every connection the test opened has ended by now (the suites wait for their apps): one
    # record each.
    assert len(_records) == _totals["connections"] - before, (_records, _totals["connections"] - before)
    _totals["records"] += len(_records)


def pytest_sessionfinish(session: Any) -> None:
    # Under pytest-xdist, each worker hands its totals to the controller (pytest_testnodedown).
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["asgi_ws_close"] = dict(_totals)


def pytest_testnodedown(node: Any, error: Any) -> None:
    for name, count in getattr(node, "workeroutput", {}).get("asgi_ws_close", {}).items():
        _totals[name] += count


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(
        f"asgi-ws-close: {_totals['connections']} WebSocket connections, {_totals['records']} records"
    )
