"""CloseCode, its tables, and Close."""

from __future__ import annotations

import dataclasses

import pytest
import websockets.frames
from starlette import status

from asgi_ws_close import CLOSE_CODE_EXPLANATIONS, OK_CLOSE_CODES, Close, CloseCode


def test_members_match_websockets() -> None:
    ours = {member.name: member.value for member in CloseCode}
    theirs = {member.name: member.value for member in websockets.frames.CloseCode}
    assert ours == theirs


def test_registered_codes_1000_to_1015_without_1004() -> None:
    assert sorted(CloseCode) == [c for c in range(1000, 1016) if c != 1004]


def test_codes_compare_equal_to_starlette_status() -> None:
    assert CloseCode.NORMAL_CLOSURE == status.WS_1000_NORMAL_CLOSURE
    assert CloseCode.POLICY_VIOLATION == status.WS_1008_POLICY_VIOLATION
    assert CloseCode.SERVICE_RESTART == status.WS_1012_SERVICE_RESTART


def test_every_member_is_explained_and_ok_codes_match_websockets() -> None:
    assert set(CLOSE_CODE_EXPLANATIONS) == set(CloseCode)
    assert OK_CLOSE_CODES == set(websockets.frames.OK_CLOSE_CODES)


@pytest.mark.parametrize(
    ("close", "text"),
    [
        (Close(4001, "bye"), "4001 (private use) bye"),
        (Close(3000, ""), "3000 (registered)"),
        (Close(CloseCode.GOING_AWAY, "bye"), "1001 (going away) bye"),
        (Close(1000), "1000 (OK)"),
        (Close(2999, "x"), "2999 (unknown) x"),
        (Close(1006), "1006 (abnormal closure [internal])"),
    ],
)
def test_close_str(close: Close, text: str) -> None:
    assert str(close) == text


def test_close_str_agrees_with_websockets() -> None:
    assert str(Close(1001, "bye")) == str(websockets.frames.Close(1001, "bye"))
    assert str(Close(4001, "bye")) == str(websockets.frames.Close(4001, "bye"))


def test_close_is_frozen_slotted_and_equal_by_value() -> None:
    close = Close(1000, "ok")
    with pytest.raises(dataclasses.FrozenInstanceError):
        close.code = 1001  # type: ignore[misc]
    assert not hasattr(close, "__dict__")
    assert close == Close(CloseCode.NORMAL_CLOSURE, "ok")
    assert Close(1000) == Close(1000, "")
