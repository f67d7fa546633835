"""The endings production sees most, read from the server's own connection object.

Each server entry's probe reads a stand-in of that server's connection object here (the
attributes the probe names, nothing else), driven by the ASGI messages the real server sends
in that ending (measured against the real servers in ``tests/matrix``). In-process and
deterministic: the server tier checks the same endings on the real servers.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
import subprocess
import sys
import textwrap
import types
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware, get_close_context
from asgi_ws_close._servers import GENERIC, SERVERS, UNKNOWN_CLOSE, detect_server, locate_server
from asgi_ws_close._types import Message, Receive, Scope, Send
from tests.support.asgi import CONNECT, OUTCOMES, echo

MODULES = {
    "uvicorn-websockets": "uvicorn.protocols.websockets.websockets_impl",
    "uvicorn-websockets-sansio": "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvicorn-wsproto": "uvicorn.protocols.websockets.wsproto_impl",
    "hypercorn": "hypercorn.protocol.ws_stream",
    "daphne": "daphne.ws_protocol",
}


class WsprotoState(enum.IntEnum):
    """wsproto.connection.ConnectionState (the probes read its names)."""

    CONNECTING = 0
    OPEN = 1
    REMOTE_CLOSING = 2
    LOCAL_CLOSING = 3
    CLOSED = 4
    REJECTING = 5


class Transport:
    def __init__(self, closing: bool) -> None:
        self.closing = closing

    def is_closing(self) -> bool:
        return self.closing


def wsclose(code: int, reason: str = "") -> SimpleNamespace:
    """A websockets.frames.Close stand-in."""
    return SimpleNamespace(code=code, reason=reason)


def server_object(server: str, **attributes: Any) -> Any:
    """An instance of a class from ``server``'s module, with ``attributes``, whose ``send``
    is what the server would hand the app."""

    async def send(self: Any, message: Message) -> None:
        self.sent.append(message)

    cls = type("Protocol", (), {"send": send, "__module__": MODULES[server]})
    obj = cls()
    obj.sent = []
    for name, value in attributes.items():
        setattr(obj, name, value)
    return obj


def websockets_protocol(
    server: str, *, rcvd: Any = None, sent: Any = None, rcvd_then_sent: bool | None = None, closing: bool = True
) -> Any:
    state = {"close_rcvd": rcvd, "close_sent": sent, "close_rcvd_then_sent": rcvd_then_sent}
    if server == "uvicorn-websockets":
        return server_object(server, transport=Transport(closing), **state)
    return server_object(server, conn=SimpleNamespace(**state), disconnected=closing, transport=Transport(closing))


def wsproto_protocol(state: WsprotoState, *, close_sent: bool, queued: list[Message] = (), **extra: Any) -> Any:  # type: ignore[assignment]
    queue = SimpleNamespace(_queue=deque(queued))
    return server_object(
        "uvicorn-wsproto",
        conn=SimpleNamespace(state=state),
        close_sent=close_sent,
        queue=queue,
        disconnected=state is not WsprotoState.OPEN or bool(queued),
        transport=Transport(True),
        **extra,
    )


async def keepalive_timeout(self: Any) -> None:  # the method's presence is what the probe reads
    pass


def run(app: Any, server: Any, incoming: list[Message], *, scope: Scope | None = None, **options: Any) -> CloseContext:
    """Run ``app`` under the middleware with ``server.send`` and ``incoming`` messages."""
    scope = {"type": "websocket", "path": "/ws", "headers": [], "http_version": "1.1", **(scope or {})}
    queue = list(incoming)

    async def receive() -> Message:
        if not queue:
            await asyncio.Event().wait()  # a server that has nothing more to say
        return queue.pop(0)

    async def main() -> None:
        try:
            await WebSocketCloseMiddleware(app, **options)(scope, receive, server.send)
        except (Exception, asyncio.CancelledError):
            pass  # what escaped the app is in context.error

    asyncio.run(main())
    return get_close_context(scope)


async def only_sends(scope: Scope, receive: Receive, send: Send) -> None:
    """Never reads after accept: ends when the server's send raises (the client is gone)."""
    await receive()
    await send({"type": "websocket.accept"})
    raise ConnectionResetError("the server's send raised: the client is gone")


def fields(context: CloseContext) -> dict[str, Any]:
    record = context.to_dict()
    return {key: record[key] for key in ("outcome", "initiator", "code", "reason", "clean", "unknown")}


# 1. Keepalive timeouts: the ASGI message says "lost"; the server sent 1011.

KEEPALIVE = {
    "outcome": "server_timeout",
    "initiator": "server",
    "code": 1011,
    "reason": "keepalive ping timeout",
    "clean": False,
    "unknown": [],
}


@pytest.mark.parametrize(
    ("server", "disconnect"),
    [
        # uvicorn 0.55: legacy reports 1006 with reason '', sansio 1005 with no reason key.
        ("uvicorn-websockets", {"type": "websocket.disconnect", "code": 1006, "reason": ""}),
        ("uvicorn-websockets-sansio", {"type": "websocket.disconnect", "code": 1005}),
    ],
)
def test_keepalive_timeout_is_the_servers_1011_under_websockets(server: str, disconnect: Message) -> None:
    protocol = websockets_protocol(server, sent=wsclose(1011, "keepalive ping timeout"))
    assert fields(run(echo, protocol, [CONNECT, disconnect])) == KEEPALIVE


def test_keepalive_timeout_is_the_servers_1011_under_wsproto() -> None:
    protocol = wsproto_protocol(WsprotoState.LOCAL_CLOSING, close_sent=True, keepalive_timeout=keepalive_timeout)
    context = run(echo, protocol, [CONNECT, {"type": "websocket.disconnect", "code": 1005}])
    assert fields(context) == KEEPALIVE
    assert context.received_then_sent is False


def test_wsproto_without_keepalive_says_the_servers_close_is_unknown() -> None:
    # A uvicorn that closed on its own for a reason this probe does not know: no guess.
    protocol = wsproto_protocol(WsprotoState.LOCAL_CLOSING, close_sent=True)
    context = run(echo, protocol, [CONNECT, {"type": "websocket.disconnect", "code": 1005}])
    assert fields(context) == {
        "outcome": "server_error",
        "initiator": "server",
        "code": None,
        "reason": "",
        "clean": False,
        "unknown": ["code", "reason", "received"],
    }


def test_daphne_ping_timeout_is_a_server_drop() -> None:
    protocol = daphne_protocol(
        droppedByMe=True, wasNotCleanReason="WebSocket ping timeout (peer did not respond with pong in time)"
    )
    context = run(echo, protocol, [CONNECT, {"type": "websocket.disconnect", "code": 1006}])
    assert fields(context) == {
        "outcome": "server_timeout",
        "initiator": "server",
        "code": 1006,
        "reason": "",
        "clean": False,
        "unknown": [],
    }


# 2. Client closes and drops, read from the server, whatever the message's shape (spec 2.5).


@pytest.mark.parametrize("spec25", [False, True], ids=["spec-2.4", "spec-2.5"])
@pytest.mark.parametrize("server", ["uvicorn-websockets-sansio", "uvicorn-wsproto"])
def test_a_drop_is_a_drop_and_an_empty_close_is_a_close(server: str, spec25: bool) -> None:
    # Spec 2.5 servers always put a reason in the disconnect ("" when none): a drop then has
    # the same shape as an empty close frame. The server's object tells them apart.
    reason = {"reason": ""} if spec25 else {}
    drop: Message = {"type": "websocket.disconnect", "code": 1005, **reason}
    empty: Message = {"type": "websocket.disconnect", "code": 1005, "reason": ""}
    if server == "uvicorn-wsproto":
        lost = wsproto_protocol(WsprotoState.OPEN, close_sent=False)
        closed = wsproto_protocol(WsprotoState.CLOSED, close_sent=False)
    else:
        lost = websockets_protocol(server)
        closed = websockets_protocol(server, rcvd=wsclose(1005), sent=wsclose(1005), rcvd_then_sent=True)
    assert fields(run(echo, lost, [CONNECT, drop])) == {
        "outcome": "dropped",
        "initiator": None,
        "code": 1006,
        "reason": "",
        "clean": False,
        "unknown": [],
    }
    assert fields(run(echo, closed, [CONNECT, empty])) == {
        "outcome": "client_closed",
        "initiator": "client",
        "code": 1005,
        "reason": "",
        "clean": True,
        "unknown": [],
    }


def test_a_generic_spec_25_server_reports_an_ambiguous_1005_as_unknown() -> None:
    async def send(message: Message) -> None: ...

    server = SimpleNamespace(send=send)
    scope = {"asgi": {"version": "3.0", "spec_version": "2.5"}}
    context = run(echo, server, [CONNECT, {"type": "websocket.disconnect", "code": 1005}], scope=scope)
    assert context.outcome is None
    assert "outcome" in context.unknown and "initiator" in context.unknown


def test_wsproto_protocol_error_is_the_servers_failure() -> None:
    # wsproto failed the connection (ParseFailed): its state stays OPEN, and uvicorn reports
    # its close to the app without sending one.
    protocol = wsproto_protocol(WsprotoState.OPEN, close_sent=False)
    disconnect = {"type": "websocket.disconnect", "code": 1002, "reason": "CLOSE with invalid code"}
    assert fields(run(echo, protocol, [CONNECT, disconnect])) == {
        "outcome": "server_error",
        "initiator": "server",
        "code": 1002,
        "reason": "CLOSE with invalid code",
        "clean": False,
        "unknown": [],
    }


def test_a_client_that_sends_a_servers_reason_text_is_still_the_client() -> None:
    # The reason-text heuristics are for servers without a probe: here the object says who.
    protocol = websockets_protocol(
        "uvicorn-websockets-sansio",
        rcvd=wsclose(1002, "invalid status code"),
        sent=wsclose(1002, "invalid status code"),
        rcvd_then_sent=True,
    )
    disconnect = {"type": "websocket.disconnect", "code": 1002, "reason": "invalid status code"}
    context = run(echo, protocol, [CONNECT, disconnect])
    assert (context.outcome, context.initiator, context.clean) == ("client_closed", "client", True)


@pytest.mark.parametrize("server", ["uvicorn-websockets", "uvicorn-websockets-sansio"])
def test_a_close_that_ends_a_fragmented_message_is_the_servers_failure(server: str) -> None:
    # Autobahn 7.1.5: the client closes (1000) in the middle of a fragmented message. websockets
    # records the close, then fails the connection with 1002 instead of echoing it, and still
    # sets close_rcvd_then_sent: the answer that is not the echo says the server failed it.
    protocol = websockets_protocol(
        server, rcvd=wsclose(1000), sent=wsclose(1002, "incomplete fragmented message"), rcvd_then_sent=True
    )
    if server == "uvicorn-websockets":  # the legacy implementation tells the app 1006
        disconnect: Message = {"type": "websocket.disconnect", "code": 1006}
    else:
        disconnect = {"type": "websocket.disconnect", "code": 1002, "reason": "incomplete fragmented message"}
    assert fields(run(echo, protocol, [CONNECT, disconnect])) == {
        "outcome": "server_error",
        "initiator": "server",
        "code": 1002,
        "reason": "incomplete fragmented message",
        "clean": False,
        "unknown": [],
    }


def test_shutdown_1012_is_the_servers_orderly_close() -> None:
    protocol = websockets_protocol("uvicorn-websockets-sansio", sent=wsclose(1012), closing=False)
    context = run(echo, protocol, [CONNECT, {"type": "websocket.disconnect", "code": 1012}])
    assert fields(context) == {
        "outcome": "server_shutdown",
        "initiator": "server",
        "code": 1012,
        "reason": "",
        "clean": True,
        "unknown": [],
    }


def hypercorn_stream(state: WsprotoState | None, *, closed: bool) -> Any:
    connection = None if state is None else SimpleNamespace(state=state)
    return server_object("hypercorn", connection=connection, closed=closed)


def test_hypercorn_client_close_is_the_clients_with_its_code_unknown() -> None:
    # hypercorn reports 1006 for every client close; its wsproto state says a frame came.
    context = run(echo, hypercorn_stream(WsprotoState.CLOSED, closed=True), [CONNECT, {**DISCONNECT_1006}])
    assert fields(context) == {
        "outcome": "client_closed",
        "initiator": "client",
        "code": None,
        "reason": "",
        "clean": True,
        "unknown": ["code", "reason", "received"],
    }


DISCONNECT_1006: Message = {"type": "websocket.disconnect", "code": 1006}


def test_hypercorn_drop_is_a_drop() -> None:
    context = run(echo, hypercorn_stream(WsprotoState.OPEN, closed=True), [CONNECT, {**DISCONNECT_1006}])
    assert (context.outcome, context.code, context.clean, context.unknown) == ("dropped", 1006, False, frozenset())


def daphne_protocol(**attributes: Any) -> Any:
    state = {
        "localCloseCode": None,
        "localCloseReason": None,
        "remoteCloseCode": None,
        "remoteCloseReason": None,
        "closedByMe": False,
        "wasClean": False,
        "droppedByMe": False,
        "wasNotCleanReason": None,
        "state": 0,
        "application_queue": SimpleNamespace(_queue=deque()),
        **attributes,
    }
    return server_object("daphne", **state)


def test_daphne_client_reason_is_read_from_autobahn() -> None:
    protocol = daphne_protocol(remoteCloseCode=4001, remoteCloseReason="bye", localCloseCode=1000, wasClean=True)
    context = run(echo, protocol, [CONNECT, {"type": "websocket.disconnect", "code": 4001}])
    assert fields(context) == {
        "outcome": "client_closed",
        "initiator": "client",
        "code": 4001,
        "reason": "bye",
        "clean": True,
        "unknown": [],
    }


# 3. Unread disconnects: the app only sends, the client closes.


def test_unread_client_close_under_websockets_is_the_clients() -> None:
    protocol = websockets_protocol(
        "uvicorn-websockets-sansio", rcvd=wsclose(4003, "gone"), sent=wsclose(4003, "gone"), rcvd_then_sent=True
    )
    context = run(only_sends, protocol, [CONNECT])
    assert fields(context) == {
        "outcome": "client_closed",
        "initiator": "client",
        "code": 4003,
        "reason": "gone",
        "clean": True,
        "unknown": [],
    }
    # The server's "client gone" still escaped the app: it is kept, and says so.
    assert isinstance(context.error, ConnectionResetError)


def test_unread_client_close_under_wsproto_comes_from_the_queued_disconnect() -> None:
    queued = [{"type": "websocket.disconnect", "code": 4003, "reason": "gone"}, {**DISCONNECT_1005}]
    protocol = wsproto_protocol(WsprotoState.CLOSED, close_sent=False, queued=queued)
    context = run(only_sends, protocol, [CONNECT])
    assert (context.outcome, context.code, context.reason, context.clean) == ("client_closed", 4003, "gone", True)


DISCONNECT_1005: Message = {"type": "websocket.disconnect", "code": 1005}


def test_unread_client_close_under_hypercorn_is_never_a_1011() -> None:
    # hypercorn drops the app's sends after the client's close; the app returns on its own.
    async def sends_then_returns(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "x"})

    context = run(sends_then_returns, hypercorn_stream(WsprotoState.CLOSED, closed=True), [CONNECT])
    assert (context.outcome, context.initiator, context.code) == ("client_closed", "client", None)
    assert context.unknown == {"code", "reason", "received"}


def test_an_app_that_returns_on_an_open_connection_is_still_the_apps() -> None:
    protocol = websockets_protocol("uvicorn-websockets-sansio", closing=False)

    async def returns(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})

    context = run(returns, protocol, [CONNECT])
    assert (context.outcome, context.initiator, context.code) == ("app_closed", "app", 1006)


# Guarded reads: a server upgrade that moves an attribute gives "unknown", never a wrong value.


def test_a_probe_that_cannot_read_the_server_makes_the_facts_unknown() -> None:
    moved = server_object("uvicorn-websockets-sansio")  # no conn, no transport: attributes moved
    context = run(echo, moved, [CONNECT, {**DISCONNECT_1005}])
    assert context.outcome is None and context.initiator is None and context.code is None
    assert {"code", "initiator", "outcome", "clean"} <= context.unknown
    # A close the message states plainly is still the client's.
    moved = server_object("uvicorn-websockets-sansio")
    context = run(echo, moved, [CONNECT, {"type": "websocket.disconnect", "code": 4001, "reason": "bye"}])
    assert (context.outcome, context.code, context.reason) == ("client_closed", 4001, "bye")


def test_a_probe_that_cannot_read_the_server_at_app_exit_leaves_the_apps_end() -> None:
    moved = server_object("uvicorn-websockets-sansio")
    context = run(only_sends, moved, [CONNECT])
    assert (context.outcome, context.initiator) == ("app_error", "app")


# 4. Detection through wrappers: the same answer, and the same object to read.


def closure_wrapper(send: Send) -> Send:
    async def otel_send(message: Message) -> None:
        await send(message)

    return otel_send


class Wrapper:
    def __init__(self, send: Send) -> None:
        self.inner = send

    async def send(self, message: Message) -> None:
        await self.inner(message)


async def _forward(send: Send, message: Message) -> None:
    await send(message)


WRAPPERS = {
    "closure": closure_wrapper,
    "closure of a closure": lambda send: closure_wrapper(closure_wrapper(send)),
    "partial": lambda send: functools.partial(_forward, send),
    "bound method of another object": lambda send: Wrapper(send).send,
    "functools.wraps": lambda send: functools.wraps(send)(lambda message: send(message)),
}


@pytest.mark.parametrize("wrap", WRAPPERS.values(), ids=WRAPPERS.keys())
@pytest.mark.parametrize("server", MODULES)
def test_detection_sees_through_wrappers(server: str, wrap: Any) -> None:
    obj = server_object(server)
    send = obj.send
    if server == "daphne":  # daphne hands the app functools.partial(Server.handle_reply, protocol)
        handler = type("Server", (), {"handle_reply": lambda self, protocol, message: None})
        handler.__module__ = "daphne.server"
        send = functools.partial(handler().handle_reply, obj)
    quirks, subject = locate_server(wrap(send))
    assert (quirks.name, subject) == (server, obj)
    assert detect_server(wrap(send)) is SERVERS[server]


def test_detection_does_not_depend_on_spec_version(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hidden(message: Message) -> None: ...

    monkeypatch.setitem(sys.modules, "uvicorn", type(sys)("uvicorn"))
    for spec in ("2.4", "2.5", "3.0"):
        scope = {"asgi": {"version": "3.0", "spec_version": spec}, "extensions": {"websocket.http.response": {}}}
        assert detect_server(hidden, scope).name == "uvicorn"


def test_wrapped_send_gives_the_same_record() -> None:
    disconnect = {"type": "websocket.disconnect", "code": 1005}
    keepalive = wsclose(1011, "keepalive ping timeout")
    plain = run(echo, websockets_protocol("uvicorn-websockets-sansio", sent=keepalive), [CONNECT, disconnect])
    protocol = websockets_protocol("uvicorn-websockets-sansio", sent=keepalive)
    wrapped = run(echo, SimpleNamespace(send=closure_wrapper(protocol.send)), [CONNECT, disconnect])
    assert fields(wrapped) == fields(plain) == KEEPALIVE
    assert wrapped.server == "uvicorn-websockets-sansio"


def test_search_is_bounded() -> None:
    # A wrapper around a deep chain of closures with no server inside: GENERIC, quickly.
    async def send(message: Message) -> None: ...

    wrapped: Any = send
    for _ in range(100):
        wrapped = closure_wrapper(wrapped)
    assert locate_server(wrapped) == (GENERIC, None)


# 6-7. outcome and http_version on every path.


@pytest.mark.parametrize(
    ("app", "incoming", "options", "outcome"),
    [
        ("echo", [CONNECT, {"type": "websocket.disconnect", "code": 4001, "reason": "x"}], {}, "client_closed"),
        ("close", [CONNECT, {"type": "websocket.disconnect", "code": 1000}], {}, "app_closed"),
        ("reject", [CONNECT], {}, "rejected"),
        ("reject", [CONNECT], {"reject_with_close_code": True}, "rejected"),
        ("raise", [CONNECT], {}, "app_error"),
        ("raise", [CONNECT], {"close_on_error": True}, "app_error"),
        ("raise-before-accept", [CONNECT], {}, "app_error"),
        ("echo", [CONNECT, {"type": "websocket.disconnect", "code": 1006}], {}, "dropped"),
        ("echo", [CONNECT, {"type": "websocket.disconnect", "code": 1012}], {}, "server_shutdown"),
        (
            "echo",
            [CONNECT, {"type": "websocket.disconnect", "code": 1009, "reason": "over size limit"}],
            {},
            "server_error",
        ),
        ("cancelled", [CONNECT], {}, "server_shutdown"),
    ],
)
def test_outcome(app: str, incoming: list[Message], options: dict[str, Any], outcome: str) -> None:
    async def close(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4002})
        await receive()

    async def reject(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 4001})

    async def raises(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom")

    async def raises_before_accept(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise RuntimeError("boom")

    async def cancelled(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise asyncio.CancelledError

    apps = {
        "echo": echo,
        "close": close,
        "reject": reject,
        "raise": raises,
        "raise-before-accept": raises_before_accept,
        "cancelled": cancelled,
    }

    async def send(message: Message) -> None: ...

    context = run(apps[app], SimpleNamespace(send=send), incoming, **options)
    assert context.outcome == outcome
    assert context.to_dict()["outcome"] == context.snapshot().outcome == outcome


def test_outcome_is_none_while_open_and_http_version_comes_from_the_scope() -> None:
    seen: list[tuple[Any, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        context = get_close_context(scope)
        seen.append((context.outcome, context.http_version))

    async def send(message: Message) -> None: ...

    context = run(app, SimpleNamespace(send=send), [CONNECT], scope={"http_version": "2"})
    assert seen == [(None, "2")]
    assert context.outcome in OUTCOMES and context.http_version == "2"
    assert context.to_dict()["http_version"] == "2"
    no_version = run(app, SimpleNamespace(send=send), [CONNECT], scope={"http_version": None})
    assert no_version.http_version is None


# 2. Shutdown: a server that never resumes the app (daphne) still gets one record each.

EXIT_SCRIPT = """
import asyncio, json, sys
from asgi_ws_close import WebSocketCloseMiddleware

calls = []

def hook(context, scope):
    calls.append(scope["path"])
    print(json.dumps([scope["path"], context.state.name, context.outcome, context.initiator, context.code]), flush=True)

async def async_hook(context, scope):
    await asyncio.sleep(0)
    print(json.dumps(["async", scope["path"]]), flush=True)

async def app(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})
    await receive()  # never answered: the server is going away

async def never() -> dict:
    await asyncio.Event().wait()

async def send(message):
    pass

middleware = WebSocketCloseMiddleware(app, on_close=[hook, async_hook])
loop = asyncio.new_event_loop()
connect = iter([{"type": "websocket.connect"}])

async def receive():
    for message in connect:
        return message
    return await never()

tasks = [loop.create_task(middleware({"type": "websocket", "path": f"/{i}"}, receive, send)) for i in range(N)]
loop.run_until_complete(asyncio.sleep(0.01))
# As daphne at shutdown: the loop stops with the app tasks pending, never resumed.
KEEP = tasks
"""


@pytest.mark.parametrize("n", [1, 5])
def test_connections_open_at_exit_each_get_one_record(n: int) -> None:
    script = EXIT_SCRIPT.replace("range(N)", f"range({n})")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    records = sorted(line for line in lines if line[0] != "async")
    assert records == [[f"/{i}", "CLOSED", "server_shutdown", "server", 1006] for i in range(n)]
    assert sorted(line[1] for line in lines if line[0] == "async") == [f"/{i}" for i in range(n)]
    assert "Traceback" not in result.stderr


# Older pins: uvicorn 0.54.0 reports a denial response's lost connection as 1005, 0.55.0 as
# 1006 (wsproto_impl/websockets_sansio_impl connection_lost); the record is the same.


@pytest.mark.parametrize("code", [1005, 1006], ids=["uvicorn-0.54", "uvicorn-0.55"])
def test_a_denial_reads_the_same_whatever_uvicorn_reports_after_it(code: int) -> None:
    async def deny(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b""})
        await receive()

    protocol = wsproto_protocol(WsprotoState.OPEN, close_sent=False)
    context = run(deny, protocol, [CONNECT, {"type": "websocket.disconnect", "code": code}])
    summary = (context.state.name, context.outcome, context.code, context.http_status)
    assert summary == ("REJECTED", "rejected", 1006, 401)


# Edges of the probes and of server detection.


def test_the_unknown_close_says_what_it_is() -> None:
    assert repr(UNKNOWN_CLOSE) == "UNKNOWN_CLOSE"


def test_wsproto_a_queued_disconnect_is_found_behind_data() -> None:
    # The app never read its queue: a text message, then the client's close.
    queued: list[Message] = [
        {"type": "websocket.receive", "text": "unread"},
        {"type": "websocket.disconnect", "code": 4003, "reason": "gone"},
    ]
    protocol = wsproto_protocol(WsprotoState.CLOSED, close_sent=False, queued=queued)
    context = run(only_sends, protocol, [CONNECT])
    assert (context.outcome, context.initiator, context.code, context.reason) == (
        "client_closed",
        "client",
        4003,
        "gone",
    )


@pytest.mark.parametrize(
    ("disconnect", "want"),
    [
        pytest.param({"code": 1012}, ("server_shutdown", 1012, "", True), id="shutdown-1012"),
        pytest.param(
            {"code": 1009, "reason": "message too big"}, ("server_error", 1009, "message too big", False), id="1009"
        ),
    ],
)
def test_wsproto_its_own_reported_closes(disconnect: dict[str, Any], want: tuple[Any, ...]) -> None:
    # uvicorn sent these closes itself (close_sent) and reports them in the disconnect.
    protocol = wsproto_protocol(WsprotoState.LOCAL_CLOSING, close_sent=True)
    context = run(echo, protocol, [CONNECT, {"type": "websocket.disconnect", **disconnect}])
    assert (context.outcome, context.code, context.reason, context.clean) == want
    assert context.initiator == "server"


def test_hypercorn_closing_on_its_own_is_a_message_too_big() -> None:
    context = run(only_sends, hypercorn_stream(WsprotoState.LOCAL_CLOSING, closed=False), [CONNECT])
    assert (context.outcome, context.initiator, context.code, context.clean) == ("server_error", "server", 1009, False)


class _Unhashable:
    __hash__ = None  # type: ignore[assignment]

    async def __call__(self, message: Message) -> None:
        return None


def test_detection_of_sends_that_hide_no_server() -> None:
    async def plain(message: Message) -> None:
        return None

    class Other:
        async def send(self, message: Message) -> None:
            return None

    scope: Scope = {"type": "websocket"}
    for send in (plain, Other().send, _Unhashable()):
        for _ in range(2):  # the second time from the cache of sends searched before
            quirks, subject = locate_server(send, scope)
            assert (quirks.name, subject) in {("generic", None), ("uvicorn", None)}
            assert locate_server(send, None) == (GENERIC, None)


def test_an_empty_closure_cell_is_skipped() -> None:
    def make() -> Any:
        async def send(message: Message) -> None:
            return later(message)

        return send

    send = make()
    assert locate_server(send, None) == (GENERIC, None)
    later = None


@pytest.mark.parametrize(
    ("imported", "extensions", "want"),
    [
        pytest.param({"granian"}, {"http.response.pathsend": {}}, "granian", id="granian"),
        pytest.param({"hypercorn"}, {}, "hypercorn", id="hypercorn"),
        pytest.param(set(), {}, "generic", id="none-imported"),
    ],
)
def test_the_scope_fingerprint(
    monkeypatch: pytest.MonkeyPatch, imported: set[str], extensions: dict[str, Any], want: str
) -> None:
    # A send that hides the server's callable: the scope and the imported servers decide.
    for name in ("uvicorn", "daphne", "granian", "hypercorn"):
        if name in imported:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        else:
            monkeypatch.delitem(sys.modules, name, raising=False)

    async def hidden(message: Message) -> None:
        return None

    # hypercorn and granian announce spec 2.3.
    scope: Scope = {"type": "websocket", "asgi": {"version": "3.0", "spec_version": "2.3"}, "extensions": extensions}
    assert locate_server(hidden, scope)[0].name == want


class _SlottedServer:
    """A server-like object of no known server, with no instance dict: its send is searched
    once, then answered from the cache."""

    __slots__ = ()

    async def send(self, message: Message) -> None:
        return None


def test_a_send_searched_before_is_answered_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    scope: Scope = {"type": "websocket", "asgi": {"version": "3.0", "spec_version": "2.3"}, "extensions": {}}
    monkeypatch.setitem(sys.modules, "hypercorn", types.ModuleType("hypercorn"))
    monkeypatch.delitem(sys.modules, "granian", raising=False)
    first = locate_server(_SlottedServer().send, scope)  # searched: nothing; the scope tells
    assert first == (SERVERS["hypercorn"], None)
    # From the cache: the scope still tells; without one, nothing does.
    assert locate_server(_SlottedServer().send, scope) == first
    assert locate_server(_SlottedServer().send, None) == (GENERIC, None)
    # No server whose scope is known is imported: the scope is not read.
    for name in ("uvicorn", "daphne", "granian", "hypercorn"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert locate_server(_SlottedServer().send, scope) == (GENERIC, None)


def test_wsproto_a_lost_connection_with_nothing_queued_is_a_drop() -> None:
    # No disconnect queued (no close frame came), the transport closing: the connection was lost.
    protocol = wsproto_protocol(WsprotoState.OPEN, close_sent=False, queued=[])
    context = run(only_sends, protocol, [CONNECT])
    assert (context.outcome, context.initiator, context.code) == ("dropped", None, 1006)


def test_wsproto_a_1012_with_a_reason_after_uvicorn_closed_is_its_shutdown() -> None:
    protocol = wsproto_protocol(WsprotoState.LOCAL_CLOSING, close_sent=True)
    context = run(echo, protocol, [CONNECT, {"type": "websocket.disconnect", "code": 1012, "reason": "restart"}])
    assert (context.outcome, context.initiator, context.code) == ("server_shutdown", "server", 1012)


@pytest.mark.parametrize(
    ("attributes", "want"),
    [
        # daphne's own websocket_timeout close, answered by the client.
        pytest.param(
            {"closedByMe": True, "wasClean": True, "localCloseCode": 1000, "remoteCloseCode": 1000},
            ("server_timeout", "server", 1000),
            id="its-timeout-close",
        ),
        # The same, never answered: no close received.
        pytest.param(
            {"closedByMe": True, "wasClean": False, "localCloseCode": 1000},
            ("server_timeout", "server", 1000),
            id="no-answer",
        ),
        # autobahn dropped the connection for a protocol error.
        pytest.param(
            {"droppedByMe": True, "wasNotCleanReason": "invalid close code"},
            ("server_error", "server", 1006),
            id="drop",
        ),
    ],
)
def test_daphne_its_own_endings(attributes: dict[str, Any], want: tuple[Any, ...]) -> None:
    context = run(echo, daphne_protocol(**attributes), [CONNECT, {**DISCONNECT_1006}])
    assert (context.outcome, context.initiator, context.code) == want


def test_the_scope_fingerprint_with_both_hypercorn_and_granian_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    # spec 2.3 without granian's pathsend extension, and granian imported: not told apart.
    for name in ("granian", "hypercorn"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))

    async def hidden(message: Message) -> None:
        return None

    scope: Scope = {"type": "websocket", "asgi": {"version": "3.0", "spec_version": "2.3"}, "extensions": {}}
    assert locate_server(hidden, scope)[0] is GENERIC


class _BuiltinLikeSend:
    """A send that is no bound method of Python code yet has `__self__` (as a method of an
    extension type has): the server is told by its owner's class."""

    def __init__(self, owner: Any) -> None:
        self.__self__ = owner

    async def __call__(self, message: Message) -> None:
        return None


def test_a_send_that_is_not_a_python_method_is_told_by_its_owner() -> None:
    owner = hypercorn_stream(WsprotoState.OPEN, closed=False)
    assert locate_server(_BuiltinLikeSend(owner), None) == (SERVERS["hypercorn"], owner)
