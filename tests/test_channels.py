"""Django Channels: the wrapped ASGI application gives consumers the context in disconnect()
and after, through Channels' scope copies; under WebsocketCommunicator and under uvicorn."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

# Imported first: it points DJANGO_SETTINGS_MODULE at the tests' minimal settings module.
from tests.support.frameworkapps import channels_app, emit  # isort: skip

from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from asgi_ws_close import CloseContext, ConnectionState, WebSocketCloseMiddleware
from asgi_ws_close.testing import CloseCapture
from tests.support.frameworkapps.clients import assert_closed

_imported = set(sys.modules)
from channels.testing import WebsocketCommunicator  # noqa: E402

# channels.testing imports daphne, for its live-server test case only. The core's server
# detection reads "daphne" in sys.modules, with a scope that has no "asgi" key (as in-process
# drivers build), as "running under daphne": forget it again, so that the other tests of this
# process see the same records whether or not they run after these.
for _name in set(sys.modules) - _imported:
    if _name == "daphne" or _name.startswith("daphne."):
        del sys.modules[_name]

CONSUMERS = ["/ws/async/", "/ws/sync/"]
TIMEOUT = 5.0


def by_source(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["source"]: line for line in lines}


def drive(application: Any, path: str, conversation: Callable[[WebsocketCommunicator], Awaitable[None]]) -> None:
    async def run() -> None:
        communicator = WebsocketCommunicator(application, path)
        connected, _ = await communicator.connect(TIMEOUT)
        assert connected
        await conversation(communicator)

    asyncio.run(run())


# --- in process, with Channels' WebsocketCommunicator ------------------------------------


@pytest.mark.parametrize("path", CONSUMERS)
def test_client_close(path: str) -> None:
    async def conversation(communicator: WebsocketCommunicator) -> None:
        await communicator.send_to(text_data="hi")
        assert await communicator.receive_from(TIMEOUT) == "hi"
        await communicator.disconnect(4001, TIMEOUT)  # the communicator sends no reason

    with emit.collect() as lines:
        drive(channels_app.application, path, conversation)
    seen = by_source(lines)
    # disconnect() read the context through the copy that CopyingMiddleware made.
    assert (seen["handler"]["close_code"], seen["handler"]["copied"]) == (4001, True)
    for line in seen.values():
        assert_closed(line["record"], initiator="client", code=4001, reason="", clean=True)


@pytest.mark.parametrize("path", CONSUMERS)
def test_app_close(path: str) -> None:
    async def conversation(communicator: WebsocketCommunicator) -> None:
        await communicator.send_to(text_data="close")
        assert await communicator.receive_output(TIMEOUT) == {"type": "websocket.close", "code": 4003, "reason": "nope"}
        # The communicator sends nothing after the app's close: answer as a server would.
        await communicator.disconnect(4003, TIMEOUT)

    with emit.collect() as lines:
        drive(channels_app.application, path, conversation)
    for line in by_source(lines).values():
        assert_closed(line["record"], initiator="app", code=4003, reason="nope", clean=True)


def test_the_middleware_works_inside_the_stack_too() -> None:
    # Wrapping the URLRouter instead of the whole stack: the consumer's scope is the copy
    # that the middleware put its context in.
    seen: list[tuple[ConnectionState, CloseContext]] = []
    application = channels_app.CopyingMiddleware(
        WebSocketCloseMiddleware(
            URLRouter([path("ws/async/", channels_app.AsyncEcho.as_asgi())]),
            on_close=lambda context, scope: seen.append((context.state, context)),
        )
    )
    capture = CloseCapture()

    async def conversation(communicator: WebsocketCommunicator) -> None:
        await communicator.disconnect(1001, TIMEOUT)

    with emit.collect() as lines:
        drive(capture.wrap(application), "/ws/async/", conversation)
    assert_closed(by_source(lines)["handler"]["record"], initiator="client", code=1001, reason="", clean=True)
    [(state, context)] = seen
    assert state is ConnectionState.CLOSED
    # The capture is outside the scope copy: it keeps its own record, which agrees.
    assert (capture.last.initiator, capture.last.code, capture.last.clean) == ("client", 1001, True)


def test_a_refusal_by_an_inner_middleware_is_recorded() -> None:
    seen: list[CloseContext] = []
    application = WebSocketCloseMiddleware(
        AllowedHostsOriginValidator(URLRouter(channels_app.websocket_urlpatterns)),
        on_close=lambda context, scope: seen.append(context),
    )

    async def run() -> None:
        headers = [(b"origin", b"http://evil.example")]
        communicator = WebsocketCommunicator(application, "/ws/async/", headers=headers)
        connected, _ = await communicator.connect(TIMEOUT)
        assert not connected
        await communicator.wait(TIMEOUT)

    asyncio.run(run())
    [context] = seen
    assert (context.state, context.initiator, context.http_status) == (ConnectionState.REJECTED, "app", 403)


def test_the_capture_reads_the_apps_context() -> None:
    capture = CloseCapture()

    async def conversation(communicator: WebsocketCommunicator) -> None:
        await communicator.disconnect(4001, TIMEOUT)

    with emit.collect():
        drive(capture.wrap(channels_app.application), "/ws/sync/", conversation)
    assert (capture.last.initiator, capture.last.code) == ("client", 4001)


# --- the example ------------------------------------------------------------------------


def test_example_in_process(caplog: pytest.LogCaptureFixture) -> None:
    from examples.frameworks import channels_app as example

    caplog.set_level("INFO", logger="example")

    async def conversation(communicator: WebsocketCommunicator) -> None:
        await communicator.send_to(text_data="hi")
        assert await communicator.receive_from(TIMEOUT) == "hi"
        await communicator.disconnect(4001, TIMEOUT)

    drive(example.application, "/ws/echo/", conversation)
    assert "consumer saw: closed by client: 4001 (private use), clean" in caplog.text
