"""The tracker's less travelled paths, each a behaviour of the sans-I/O core: messages that are
not ASGI messages, the app's and the server's endings arriving in unusual orders, and what the
server's connection object says when it disagrees with the messages."""

from __future__ import annotations

import types
from typing import Any

from asgi_ws_close._servers import GENERIC, LOST, SERVERS, UNKNOWN_CLOSE, Wire
from asgi_ws_close._tracker import CloseTracker, ConnectionState
from asgi_ws_close.codes import Close

CONNECT = {"type": "websocket.connect"}
ACCEPT = {"type": "websocket.accept"}


def opened(**options: Any) -> CloseTracker:
    tracker = CloseTracker(**options)
    tracker.receive(CONNECT)
    tracker.send(ACCEPT)
    assert tracker.state is ConnectionState.OPEN
    return tracker


def test_a_mapping_without_a_type_is_not_a_message() -> None:
    tracker = opened()
    tracker.receive(types.MappingProxyType({"code": 1000}))
    tracker.send(types.MappingProxyType({}))
    assert tracker.state is ConnectionState.OPEN


def test_messages_are_not_counted_unless_asked() -> None:
    tracker = opened(count_messages=False)
    tracker.receive({"type": "websocket.receive", "text": "hi"})
    tracker.send({"type": "websocket.send", "text": "hi"})
    assert (tracker.messages_received, tracker.messages_sent) == (None, None)


def test_close_on_error_before_accept_is_a_rejection() -> None:
    # The close that close_on_error would send, before accept: the handshake is refused.
    tracker = CloseTracker()
    tracker.receive(CONNECT)
    tracker.closing_for_error({"type": "websocket.close", "code": 1011})
    assert tracker.state is ConnectionState.REJECTED
    assert tracker.outcome == "rejected"


def test_a_cancellation_is_recorded_once() -> None:
    tracker = opened()
    tracker.app_cancelled()
    first = tracker.outcome, tracker.code, tracker.closed_at
    tracker.app_cancelled()
    tracker.app_exited(RuntimeError("late"))
    assert (tracker.outcome, tracker.code, tracker.closed_at) == first
    assert tracker.error is None


def test_the_exit_flush_changes_nothing_once_the_app_is_done() -> None:
    tracker = opened()
    tracker.receive({"type": "websocket.disconnect", "code": 4001, "reason": "bye"})
    tracker.app_exited()
    tracker.server_exited()
    assert (tracker.outcome, tracker.code) == ("client_closed", 4001)


def test_at_exit_a_close_the_client_sent_unread_is_the_clients() -> None:
    tracker = opened()
    tracker.server_exited(wire=Wire(Close(4003, "gone"), Close(4003, "gone"), True))
    assert (tracker.outcome, tracker.initiator, tracker.code, tracker.reason) == (
        "client_closed",
        "client",
        4003,
        "gone",
    )


def test_at_exit_a_lost_transport_is_the_servers() -> None:
    # The process is ending: the server is what ends the connection, not the peer.
    tracker = opened()
    tracker.server_exited(wire=LOST)
    assert (tracker.outcome, tracker.initiator, tracker.code) == ("server_shutdown", "server", 1006)


def test_at_exit_after_the_apps_close_its_close_stands() -> None:
    tracker = opened()
    tracker.send({"type": "websocket.close", "code": 4002, "reason": "done"})
    tracker.server_exited()
    assert tracker.state is ConnectionState.CLOSED
    assert (tracker.outcome, tracker.initiator, tracker.code, tracker.reason) == ("app_closed", "app", 4002, "done")


def test_a_client_close_the_server_never_answered_is_not_clean() -> None:
    # The wire: the peer's close came, the server had not answered it yet.
    tracker = opened(quirks=SERVERS["hypercorn"])
    tracker.receive({"type": "websocket.disconnect", "code": 1006}, wire=Wire(UNKNOWN_CLOSE, None, True))
    assert (tracker.outcome, tracker.initiator, tracker.clean) == ("client_closed", "client", False)
    assert {"code", "reason", "received"} <= tracker.unknown


def test_a_probed_close_from_a_server_that_drops_reasons_says_the_reason_is_unknown() -> None:
    # A wire given for an entry without a probe (granian keeps no reasons): the reason it
    # carries is not trusted.
    tracker = opened(quirks=SERVERS["granian"])
    tracker.receive({"type": "websocket.disconnect", "code": 4001}, wire=Wire(Close(4001, ""), Close(4001, ""), True))
    assert (tracker.outcome, tracker.code) == ("client_closed", 4001)
    assert "reason" in tracker.unknown


def test_a_close_after_the_end_changes_nothing() -> None:
    tracker = opened(quirks=GENERIC)
    tracker.receive({"type": "websocket.disconnect", "code": 4001, "reason": "bye"})
    tracker._app_close({"type": "websocket.close", "code": 4002}, {"type": "websocket.close", "code": 4002})
    assert (tracker.initiator, tracker.code, tracker.sent) == ("client", 4001, None)


def test_a_cancellation_after_an_unread_client_close_is_the_clients_close() -> None:
    tracker = opened()
    tracker.app_cancelled(wire=Wire(Close(4003, "gone"), Close(4003, "gone"), True))
    assert (tracker.outcome, tracker.initiator, tracker.code, tracker.clean) == ("client_closed", "client", 4003, True)
