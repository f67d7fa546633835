"""The per-server quirks table and server detection, fed with dicts and stand-in objects."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from asgi_ws_close import Close, ConnectionState, WebSocketCloseMiddleware
from asgi_ws_close._servers import GENERIC, SERVERS, detect_server
from asgi_ws_close._tracker import CloseTracker

OPENED = [{"type": "websocket.connect"}]


def opened(server: str) -> CloseTracker:
    tracker = CloseTracker(quirks=SERVERS[server])
    tracker.receive({"type": "websocket.connect"})
    tracker.send({"type": "websocket.accept"})
    return tracker


def fake_send_of(module: str) -> Any:
    # A bound method of an instance of a class that lives in ``module``, like servers' send.
    cls = type("Protocol", (), {"send": lambda self, message: None, "__module__": module})
    return cls().send


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("uvicorn.protocols.websockets.websockets_impl", "uvicorn-websockets"),
        ("uvicorn.protocols.websockets.websockets_sansio_impl", "uvicorn-websockets-sansio"),
        ("uvicorn.protocols.websockets.wsproto_impl", "uvicorn-wsproto"),
        ("hypercorn.protocol.ws_stream", "hypercorn"),
        ("granian._granian", "granian"),
        ("some.other.server", "generic"),
    ],
)
def test_detection_by_the_class_of_send(module: str, name: str) -> None:
    assert detect_server(fake_send_of(module)).name == name


def test_detection_sees_through_partials_like_daphnes() -> None:
    send = functools.partial(fake_send_of("daphne.server"), "protocol")
    assert detect_server(send).name == "daphne"


def test_plain_functions_and_wrapped_sends_are_generic() -> None:
    async def send(message: Any) -> None: ...

    assert detect_server(send) is GENERIC
    assert detect_server(print) is GENERIC  # a builtin whose __self__ is a module


def test_every_entry_names_its_facts() -> None:
    for name, quirks in SERVERS.items():
        assert quirks.name == name
        assert quirks.facts


def test_hypercorn_client_close_is_unknown_not_guessed() -> None:
    tracker = opened("hypercorn")
    tracker.receive({"type": "websocket.disconnect", "code": 1006})
    tracker.app_exited()
    assert tracker.state is ConnectionState.CLOSED
    assert (tracker.code, tracker.clean, tracker.initiator, tracker.received) == (None, None, None, None)
    assert {"code", "reason", "clean", "initiator"} <= tracker.unknown


def test_hypercorn_reply_to_the_apps_close_is_fine() -> None:
    tracker = opened("hypercorn")
    tracker.send({"type": "websocket.close", "code": 4003, "reason": "nope"})
    tracker.receive({"type": "websocket.disconnect", "code": 1000})
    assert (tracker.code, tracker.reason, tracker.clean, tracker.unknown) == (4003, "nope", True, frozenset())


@pytest.mark.parametrize(("server", "code"), [("hypercorn", 1011), ("daphne", 1011)])
def test_servers_that_close_for_a_crashed_app(server: str, code: int) -> None:
    tracker = opened(server)
    tracker.app_exited(RuntimeError("boom"))
    assert (tracker.initiator, tracker.code, tracker.clean) == ("app", code, False)


@pytest.mark.parametrize("error", [None, RuntimeError("boom")], ids=["returned", "raised"])
def test_granian_close_after_the_app_ended_is_unknown(error: BaseException | None) -> None:
    # granian sends an empty close frame if the client is still there, and nothing if the
    # client closed while the app was not reading: it cannot be told, so it is not guessed.
    tracker = opened("granian")
    tracker.app_exited(error)
    assert (tracker.initiator, tracker.code, tracker.clean) == ("app", None, None)
    assert tracker.unknown == {"code", "reason", "clean", "received", "received_then_sent"}
    assert tracker.outcome == ("app_closed" if error is None else "app_error")


@pytest.mark.parametrize("server", ["uvicorn-websockets", "uvicorn-websockets-sansio", "uvicorn-wsproto"])
def test_uvicorn_drops_the_transport_for_a_crashed_app(server: str) -> None:
    tracker = opened(server)
    tracker.app_exited(RuntimeError("boom"))
    assert (tracker.initiator, tracker.code, tracker.clean) == ("app", 1006, False)


def test_hypercorn_closes_with_1011_when_the_app_returns_or_is_cancelled() -> None:
    returned = opened("hypercorn")
    returned.app_exited()
    assert (returned.initiator, returned.code) == ("app", 1011)
    cancelled = opened("hypercorn")
    cancelled.app_cancelled()
    assert (cancelled.initiator, cancelled.code, cancelled.clean) == ("server", 1011, False)


@pytest.mark.parametrize("server", ["daphne", "granian"])
def test_client_code_without_reason(server: str) -> None:
    tracker = opened(server)
    tracker.receive({"type": "websocket.disconnect", "code": 4001})
    assert (tracker.initiator, tracker.code, tracker.reason, tracker.clean) == ("client", 4001, "", True)
    assert tracker.received == Close(4001, "")
    assert tracker.unknown == {"reason"}


def test_daphne_empty_close_is_code_none() -> None:
    tracker = opened("daphne")
    tracker.receive({"type": "websocket.disconnect", "code": None})
    assert (tracker.code, tracker.initiator, tracker.clean) == (1005, "client", True)


def test_granian_1005_is_ambiguous() -> None:
    tracker = opened("granian")
    tracker.receive({"type": "websocket.disconnect", "code": 1005})
    assert (tracker.code, tracker.clean, tracker.initiator) == (None, None, None)
    assert "code" in tracker.unknown


def test_sansio_1005_without_reason_is_a_drop_but_with_reason_a_close() -> None:
    drop = opened("uvicorn-websockets-sansio")
    drop.receive({"type": "websocket.disconnect", "code": 1005})
    empty = opened("uvicorn-websockets-sansio")
    empty.receive({"type": "websocket.disconnect", "code": 1005, "reason": ""})
    assert (drop.code, drop.clean, drop.initiator) == (1006, False, None)
    assert (empty.code, empty.clean, empty.initiator) == (1005, True, "client")


def test_server_option_forces_an_entry_and_rejects_unknown_names() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None: ...

    assert WebSocketCloseMiddleware(app, server="daphne")._quirks is SERVERS["daphne"]
    with pytest.raises(ValueError, match="server must be one of 'generic', 'uvicorn-websockets'"):
        WebSocketCloseMiddleware(app, server="nginx")


def scope_of(spec: str | None, extensions: dict[str, Any] | None) -> dict[str, Any]:
    scope: dict[str, Any] = {"type": "websocket", "asgi": {"version": "3.0"}}
    if spec is not None:
        scope["asgi"]["spec_version"] = spec
    if extensions is not None:
        scope["extensions"] = extensions
    return scope


@pytest.mark.parametrize(
    ("spec", "extensions", "modules", "name"),
    [
        ("2.4", {"websocket.http.response": {}}, ["uvicorn"], "uvicorn"),
        ("2.3", {"websocket.http.response": {}}, ["hypercorn"], "hypercorn"),
        ("2.3", {"http.response.pathsend": {}, "websocket.http.response": {}}, ["granian"], "granian"),
        (None, None, ["daphne"], "daphne"),
        ("2.4", {"websocket.http.response": {}}, [], "generic"),  # uvicorn's fingerprint, no uvicorn
        ("2.5", {"websocket.http.response": {}}, ["uvicorn"], "uvicorn"),  # a later spec: still uvicorn
        ("2.5", {}, ["uvicorn"], "generic"),
    ],
)
def test_detection_by_scope_when_send_is_wrapped(
    spec: str | None, extensions: dict[str, Any] | None, modules: list[str], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    for module in ("uvicorn", "hypercorn", "granian", "daphne"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    for module in modules:
        monkeypatch.setitem(sys.modules, module, type(sys)(module))

    async def wrapped_send(message: Any) -> None: ...

    assert detect_server(wrapped_send, scope_of(spec, extensions)).name == name
    # A recognised send wins over the scope.
    assert detect_server(fake_send_of("hypercorn.protocol.ws_stream"), scope_of(spec, extensions)).name == "hypercorn"


def test_uvicorn_without_its_implementation_reads_drops_as_drops() -> None:
    tracker = opened("uvicorn")
    tracker.receive({"type": "websocket.disconnect", "code": 1005})
    assert (tracker.code, tracker.clean) == (1006, False)


def test_sansio_reports_its_own_1007_for_invalid_utf8_text() -> None:
    sansio = opened("uvicorn-websockets-sansio")
    sansio.receive({"type": "websocket.disconnect", "code": 1007, "reason": ""})
    assert (sansio.initiator, sansio.clean, sansio.received_then_sent) == ("server", False, False)
    # The same report elsewhere is a client's close.
    wsproto = opened("uvicorn-wsproto")
    wsproto.receive({"type": "websocket.disconnect", "code": 1007, "reason": ""})
    assert (wsproto.initiator, wsproto.clean) == ("client", True)


def test_a_scope_without_asgi_is_not_daphnes(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "daphne", type(sys)("daphne"))

    async def send(message: Any) -> None: ...

    assert detect_server(send, {"type": "websocket"}) is GENERIC


def test_unknown_codes_read_well_in_str_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from asgi_ws_close import CloseContext
    from asgi_ws_close.integrations.logging import log_close

    tracker = opened("hypercorn")
    tracker.receive({"type": "websocket.disconnect", "code": 1006})
    tracker.app_exited()
    context = CloseContext._of(tracker)
    assert str(context) == "closed by nobody: unknown, clean unknown"
    with caplog.at_level(logging.INFO, logger="asgi_ws_close"):
        log_close(context, {"type": "websocket", "path": "/ws"})
    assert caplog.records[0].getMessage().endswith("code unknown")


def test_granian_fails_bad_codes_with_its_own_1002() -> None:
    tracker = opened("granian")
    tracker.receive({"type": "websocket.disconnect", "code": 1002})
    assert (tracker.initiator, tracker.code, tracker.clean) == ("server", 1002, False)


def test_granian_refuses_with_403_when_the_app_raises_before_accept() -> None:
    rejected = CloseTracker(quirks=SERVERS["granian"])
    rejected.app_exited(RuntimeError("before accept"))
    assert (rejected.state, rejected.http_status) == (ConnectionState.REJECTED, 403)


def test_daphne_leaves_the_connection_open_when_the_app_returns() -> None:
    tracker = opened("daphne")
    tracker.app_exited()
    assert (tracker.state, tracker.initiator, tracker.code, tracker.clean) == (
        ConnectionState.CLOSED,
        "app",
        None,
        None,
    )
    assert "code" in tracker.unknown and "initiator" not in tracker.unknown
    crashed = opened("daphne")
    crashed.app_exited(RuntimeError("boom"))
    assert crashed.code == 1011
