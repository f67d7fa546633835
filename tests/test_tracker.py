"""Pure tests of the sans-I/O tracker: ASGI message dicts in, close facts out."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import pytest

from asgi_ws_close import Close, CloseCode, ConnectionState
from asgi_ws_close._tracker import TRANSITIONS, CloseTracker

CONNECT = {"type": "websocket.connect"}
ACCEPT = {"type": "websocket.accept"}


def recv(**fields: Any) -> tuple[str, dict[str, Any]]:
    return ("receive", {"type": "websocket.disconnect", **fields})


def close(**fields: Any) -> tuple[str, dict[str, Any]]:
    return ("send", {"type": "websocket.close", **fields})


OPENED: list[tuple[str, dict[str, Any]]] = [("receive", CONNECT), ("send", ACCEPT)]


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def feed(events: Sequence[tuple[str, dict[str, Any]]], *, exit: BaseException | None | str = None) -> CloseTracker:
    tracker = CloseTracker()
    for direction, message in events:
        if direction == "receive":
            tracker.receive(message)
        else:
            tracker.send(message)
    if exit == "cancel":
        tracker.app_cancelled()
    elif exit != "running":
        tracker.app_exited(exit if isinstance(exit, BaseException) else None)
    return tracker


# (name, events, expected: state, initiator, code, reason, clean, received, sent, rts)
SCENARIOS: list[tuple[str, list[tuple[str, dict[str, Any]]], tuple[Any, ...]]] = [
    (
        "client closes 4001 bye",
        [*OPENED, recv(code=4001, reason="bye")],
        ("CLOSED", "client", 4001, "bye", True, Close(4001, "bye"), None, True),
    ),
    (
        "client closes with empty payload (uvicorn: 1005 with reason '')",
        [*OPENED, recv(code=1005, reason="")],
        ("CLOSED", "client", 1005, "", True, Close(1005, ""), None, True),
    ),
    (
        "client closes with empty payload (daphne: code=None)",
        [*OPENED, recv(code=None)],
        ("CLOSED", "client", 1005, "", True, Close(1005, ""), None, True),
    ),
    (
        "client closes 1000 without reason key",
        [*OPENED, recv(code=1000)],
        ("CLOSED", "client", 1000, "", True, Close(1000, ""), None, True),
    ),
    (
        "client closes, reason None",
        [*OPENED, recv(code=1001, reason=None)],
        ("CLOSED", "client", 1001, "", True, Close(1001, ""), None, True),
    ),
    (
        "missing code, unknown server: ambiguous",
        [*OPENED, recv()],
        # No code key at all: 1005 by the ASGI spec, and no reason key: a drop on some servers,
        # an empty close frame on others. An unknown server's report is not guessed at.
        ("CLOSED", None, None, "", None, None, None, None),
    ),
    (
        "drop reported as 1006 (uvicorn websockets, hypercorn, daphne)",
        [*OPENED, recv(code=1006, reason="")],
        ("CLOSED", None, 1006, "", False, None, None, None),
    ),
    (
        "1005 without reason key, unknown server: ambiguous (see test_servers_table for uvicorn)",
        [*OPENED, recv(code=1005)],
        ("CLOSED", None, None, "", None, None, None, None),
    ),
    (
        "app closes 4003 nope, then the server's echo",
        [*OPENED, close(code=4003, reason="nope"), recv(code=4003, reason="nope")],
        ("CLOSED", "app", 4003, "nope", True, None, Close(4003, "nope"), False),
    ),
    (
        "app closes, legacy websockets answers 1005 without reason",
        [*OPENED, close(code=4003, reason="nope"), recv(code=1005)],
        ("CLOSED", "app", 4003, "nope", True, None, Close(4003, "nope"), False),
    ),
    (
        "app closes, the peer never answers (daphne: 1006)",
        [*OPENED, close(code=4003, reason="nope"), recv(code=1006)],
        ("CLOSED", "app", 4003, "nope", False, None, Close(4003, "nope"), False),
    ),
    (
        "app closes with ASGI defaults and returns",
        [*OPENED, close()],
        ("CLOSED", "app", 1000, "", True, None, Close(1000, ""), False),
    ),
    (
        "app closes with reason None",
        [*OPENED, close(code=1001, reason=None)],
        ("CLOSED", "app", 1001, "", True, None, Close(1001, ""), False),
    ),
    (
        "close before accept",
        [("receive", CONNECT), close(code=4001, reason="go away")],
        ("REJECTED", "app", 1006, "", False, None, Close(4001, "go away"), None),
    ),
    (
        "denial response",
        [("receive", CONNECT), ("send", {"type": "websocket.http.response.start", "status": 401})],
        ("REJECTED", "app", 1006, "", False, None, None, None),
    ),
    (
        "server shutdown 1012",
        [*OPENED, recv(code=1012)],
        ("CLOSED", "server", 1012, "", True, Close(1012, ""), None, False),
    ),
    (
        "server-detected protocol error (websockets)",
        [*OPENED, recv(code=1002, reason="invalid status code")],
        ("CLOSED", "server", 1002, "invalid status code", False, Close(1002, "invalid status code"), None, False),
    ),
    (
        "server-detected bad UTF-8 (wsproto)",
        [*OPENED, recv(code=1007, reason="Error decoding CLOSE reason: 'utf-8' codec can't decode")],
        (
            "CLOSED",
            "server",
            1007,
            "Error decoding CLOSE reason: 'utf-8' codec can't decode",
            False,
            Close(1007, "Error decoding CLOSE reason: 'utf-8' codec can't decode"),
            None,
            False,
        ),
    ),
    (
        "client sends 1002 with a reason of its own",
        [*OPENED, recv(code=1002, reason="your frames are bad")],
        ("CLOSED", "client", 1002, "your frames are bad", True, Close(1002, "your frames are bad"), None, True),
    ),
    (
        "app returns without closing",
        [*OPENED],
        ("CLOSED", "app", 1006, "", False, None, None, None),
    ),
    (
        "app returns before accept",
        [("receive", CONNECT)],
        ("REJECTED", "app", 1006, "", False, None, None, None),
    ),
    (
        "client leaves during the handshake",
        [("receive", CONNECT), recv(code=1006)],
        ("CLOSED", None, 1006, "", False, None, None, None),
    ),
]


@pytest.mark.parametrize(("events", "expected"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_scenario(events: list[tuple[str, dict[str, Any]]], expected: tuple[Any, ...]) -> None:
    tracker = feed(events)
    state, initiator, code, reason, clean, received, sent, rts = expected
    assert tracker.state is ConnectionState[state]
    assert tracker.initiator == initiator
    assert tracker.code == code
    assert tracker.reason == reason
    assert tracker.clean is clean
    assert tracker.received == received
    assert tracker.sent == sent
    assert tracker.received_then_sent is rts
    assert tracker.error is None


def test_close_before_accept_is_403_and_denial_keeps_its_status() -> None:
    assert feed([("receive", CONNECT), close(code=4001)]).http_status == 403
    denial = {"type": "websocket.http.response.start", "status": 401, "headers": []}
    assert feed([("receive", CONNECT), ("send", denial)]).http_status == 401
    assert feed([("receive", CONNECT)]).http_status == 500


def test_accepted_connection_has_no_http_status() -> None:
    assert feed([*OPENED, recv(code=1000)]).http_status is None


def test_app_error_after_accept_is_recorded_and_not_clean() -> None:
    error = RuntimeError("boom")
    tracker = feed(OPENED, exit=error)
    assert tracker.state is ConnectionState.CLOSED
    assert tracker.error is error
    assert tracker.initiator == "app"
    assert tracker.code == 1006
    assert tracker.clean is False


def test_app_error_after_a_clean_client_close_makes_it_unclean() -> None:
    error = ValueError("late")
    tracker = feed([*OPENED, recv(code=1000, reason="")], exit=error)
    assert tracker.initiator == "client"
    assert tracker.code == 1000
    assert tracker.error is error
    assert tracker.clean is False


def test_app_error_before_accept_is_a_500_rejection() -> None:
    error = KeyError("x")
    tracker = feed([("receive", CONNECT)], exit=error)
    assert tracker.state is ConnectionState.REJECTED
    assert tracker.http_status == 500
    assert tracker.error is error


@pytest.mark.parametrize(
    ("events", "code", "clean"),
    [
        ([("receive", CONNECT)], 1006, False),
        # Open: the code depends on who cancelled (a server at shutdown closes first; an app
        # that cancels itself leaves a drop), so an unknown server's is unknown.
        (OPENED, None, None),
    ],
    ids=["connecting", "open"],
)
def test_cancellation_is_the_server_ending_the_connection(
    events: list[tuple[str, dict[str, Any]]], code: int | None, clean: bool | None
) -> None:
    tracker = feed(events, exit="cancel")
    assert tracker.state is ConnectionState.CLOSED
    assert tracker.initiator == "server"
    assert tracker.code == code
    assert tracker.clean is clean
    assert tracker.error is None


def test_cancellation_while_closing_keeps_the_apps_close() -> None:
    tracker = feed([*OPENED, close(code=4000, reason="bye")], exit="cancel")
    assert tracker.initiator == "app"
    assert tracker.code == 4000
    assert tracker.clean is True


def test_exit_is_recorded_once() -> None:
    tracker = feed(OPENED, exit=RuntimeError("first"))
    first = tracker.error
    tracker.app_exited(RuntimeError("second"))
    tracker.app_cancelled()
    assert tracker.error is first
    assert tracker.initiator == "app"


def test_state_while_open_and_closing() -> None:
    tracker = feed([("receive", CONNECT)], exit="running")
    assert tracker.state is ConnectionState.CONNECTING
    tracker.send(ACCEPT)
    assert tracker.state is ConnectionState.OPEN
    assert (tracker.code, tracker.reason, tracker.clean, tracker.duration) == (None, "", None, None)
    tracker.send({"type": "websocket.close", "code": 4003, "reason": "nope"})
    assert tracker.state is ConnectionState.CLOSING
    # Not ended yet: no close status until the connection is over.
    assert (tracker.code, tracker.clean, tracker.closed_at) == (None, None, None)
    assert tracker.initiator == "app"
    tracker.receive({"type": "websocket.disconnect", "code": 4003, "reason": "nope"})
    assert tracker.state is ConnectionState.CLOSED
    assert tracker.code == 4003


def test_only_the_first_close_counts() -> None:
    tracker = feed([*OPENED, recv(code=4001, reason="first"), close(code=4002), recv(code=4003, reason="x")])
    assert tracker.initiator == "client"
    assert tracker.received == Close(4001, "first")
    assert tracker.sent is None
    assert tracker.code == 4001


def test_app_close_after_the_server_refused_it_is_abnormal() -> None:
    tracker = feed([*OPENED, close(code=999, reason="bad")], exit="running")
    tracker.send_failed({"type": "websocket.close", "code": 999, "reason": "bad"})
    tracker.app_exited(RuntimeError("invalid status code"))
    assert tracker.sent == Close(999, "bad")
    assert tracker.code == 1006
    assert tracker.clean is False


def test_failed_send_of_a_data_message_changes_nothing() -> None:
    tracker = feed(OPENED, exit="running")
    tracker.send_failed({"type": "websocket.send", "text": "x"})
    tracker.receive({"type": "websocket.disconnect", "code": 1000, "reason": ""})
    assert tracker.clean is True


def test_messages_are_counted_in_both_directions() -> None:
    events = [
        *OPENED,
        ("receive", {"type": "websocket.receive", "text": "a"}),
        ("receive", {"type": "websocket.receive", "bytes": b"b"}),
        ("send", {"type": "websocket.send", "text": "c"}),
        recv(code=1000),
    ]
    tracker = feed(events)
    assert (tracker.messages_received, tracker.messages_sent) == (2, 1)


def test_timings_use_the_injected_clocks() -> None:
    mono, wall = FakeClock(100.0), FakeClock(1_700_000_000.0)
    tracker = CloseTracker(clock=mono, wall_clock=wall)
    assert tracker.opened_at == 1_700_000_000.0
    tracker.send(ACCEPT)
    mono.now, wall.now = 102.5, 1_700_000_003.0
    tracker.receive({"type": "websocket.disconnect", "code": 1000})
    assert tracker.duration == 2.5
    assert tracker.closed_at == 1_700_000_003.0
    mono.now = 200.0
    tracker.app_exited()
    assert tracker.duration == 2.5  # the end is when the connection ended, not the app


class OtherEnum(enum.IntEnum):
    BYE = 4444


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (CloseCode.GOING_AWAY, 1001),
        (OtherEnum.BYE, 4444),
        ("4001", 4001),
        (4001.0, 4001),
        ("not a code", 1005),
        (object(), 1005),
        (10**100, 10**100),
    ],
)
def test_odd_codes_are_read_leniently(code: object, expected: int) -> None:
    tracker = feed([*OPENED, recv(code=code, reason="r")])
    assert tracker.received is not None
    assert tracker.received.code == expected
    assert type(tracker.received.code) in (int, CloseCode)


def test_registered_codes_become_enum_members() -> None:
    tracker = feed([*OPENED, recv(code=1001, reason="")])
    assert tracker.received is not None
    assert tracker.received.code is CloseCode.GOING_AWAY


@pytest.mark.parametrize(
    ("reason", "expected"),
    [(b"bytes \xff", "bytes \ufffd"), (42, "42"), ("x" * 10_000, "x" * 10_000)],
)
def test_odd_reasons_are_read_leniently(reason: object, expected: str) -> None:
    tracker = feed([*OPENED, recv(code=4000, reason=reason)])
    assert tracker.reason == expected


def test_unknown_and_malformed_messages_are_ignored() -> None:
    tracker = feed(
        [
            ("receive", CONNECT),
            ("receive", {"type": "websocket.unknown"}),
            ("receive", {}),
            ("send", {"type": "websocket.accept"}),
            ("send", {"type": "lifespan.startup.complete"}),
            ("send", {"no": "type"}),
            ("send", {"type": "websocket.http.response.start", "status": 500}),  # after accept
            ("send", {"type": "websocket.accept"}),  # twice
        ],
        exit="running",
    )
    assert tracker.state is ConnectionState.OPEN
    assert tracker.http_status is None


def test_denial_with_a_non_int_status() -> None:
    tracker = feed([("receive", CONNECT), ("send", {"type": "websocket.http.response.start", "status": "x"})])
    assert tracker.state is ConnectionState.REJECTED
    assert tracker.http_status is None


def test_transition_table_covers_every_state_and_ends_are_terminal() -> None:
    assert set(TRANSITIONS) == set(ConnectionState)
    assert TRANSITIONS[ConnectionState.CLOSED] == {}
    assert TRANSITIONS[ConnectionState.REJECTED] == {}
    for targets in TRANSITIONS.values():
        for target in targets.values():
            assert target in ConnectionState


@pytest.mark.parametrize("message", [None, 42, "websocket.close", ["type"], {"type": None}])
def test_things_that_are_not_asgi_messages_are_ignored(message: Any) -> None:
    tracker = CloseTracker()
    tracker.receive(message)
    tracker.send(message)
    tracker.send_failed(message)
    assert tracker.state is ConnectionState.CONNECTING


def test_sends_after_close_counts_every_late_message() -> None:
    tracker = feed([*OPENED, ("send", {"type": "websocket.send", "text": "before"})], exit="running")
    tracker.send({"type": "websocket.close", "code": 1000})
    assert tracker.sends_after_close == 0
    tracker.send({"type": "websocket.send", "text": "late"})
    tracker.send({"type": "websocket.close", "code": 4000})  # a second close
    tracker.send({"type": "websocket.accept"})
    assert tracker.sends_after_close == 3
    assert tracker.messages_sent == 2
    assert tracker.sent == Close(1000, "")  # the first close stands


def test_sends_after_the_client_closed_are_counted() -> None:
    tracker = feed([*OPENED, recv(code=1001, reason="")], exit="running")
    tracker.send({"type": "websocket.send", "text": "late"})
    tracker.send({"type": "websocket.close"})
    assert tracker.sends_after_close == 2
    assert tracker.sent is None


def test_denial_body_is_not_a_send_after_close() -> None:
    tracker = feed(
        [
            ("receive", CONNECT),
            ("send", {"type": "websocket.http.response.start", "status": 401}),
            ("send", {"type": "websocket.http.response.body", "body": b"no"}),
        ]
    )
    assert tracker.sends_after_close == 0


def test_requested_is_what_the_app_asked_and_sent_what_went_out() -> None:
    tracker = feed(OPENED, exit="running")
    asked = {"type": "websocket.close", "code": 999, "reason": "x" * 200}
    tracker.send({"type": "websocket.close", "code": 1011, "reason": "x" * 123}, requested=asked)
    assert tracker.requested == Close(999, "x" * 200)
    assert tracker.sent == Close(1011, "x" * 123)
    tracker.app_exited()
    assert tracker.code == 1011


def test_requested_equals_sent_without_a_policy() -> None:
    tracker = feed([*OPENED, close(code=4003, reason="nope")])
    assert tracker.requested == tracker.sent == Close(4003, "nope")


def test_rejected_with_close_keeps_the_apps_code() -> None:
    tracker = feed([("receive", CONNECT)], exit="running")
    tracker.rejected_with_close({"type": "websocket.close", "code": 4401, "reason": "token"})
    tracker.receive({"type": "websocket.disconnect", "code": 4401, "reason": "token"})
    tracker.app_exited()
    assert tracker.state is ConnectionState.REJECTED
    assert (tracker.code, tracker.reason, tracker.clean, tracker.http_status) == (4401, "token", True, None)
    assert tracker.initiator == "app"
    assert tracker.received_then_sent is False
    # Only from CONNECTING:
    opened = feed(OPENED, exit="running")
    opened.rejected_with_close({"type": "websocket.close", "code": 4401})
    assert opened.state is ConnectionState.OPEN


def test_the_echo_of_an_apps_own_1006_is_not_a_loss() -> None:
    # uvicorn (sansio, wsproto) answers the app's close with the app's own code and reason.
    tracker = feed([*OPENED, close(code=1006, reason="bad"), recv(code=1006, reason="bad")])
    assert tracker.clean is True
    lost = feed([*OPENED, close(code=4000, reason="bye"), recv(code=1006)])
    assert lost.clean is False


def test_a_failed_accept_then_close_rejection_is_abnormal() -> None:
    tracker = feed([("receive", CONNECT)], exit="running")
    message = {"type": "websocket.close", "code": 4401, "reason": "token"}
    tracker.rejected_with_close(message)
    tracker.send_failed(message)
    assert (tracker.state, tracker.code, tracker.clean) == (ConnectionState.REJECTED, 1006, False)
    # A 403 rejection stays as it was.
    rejected = feed([("receive", CONNECT), close(code=4401)], exit="running")
    rejected.send_failed({"type": "websocket.close", "code": 4401})
    assert (rejected.code, rejected.http_status) == (1006, 403)
