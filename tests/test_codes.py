"""CloseCode, its tables, and Close."""

from __future__ import annotations

import dataclasses

import pytest
import websockets.exceptions
import websockets.frames
from starlette import status

from asgi_ws_close import Close, CloseCode
from asgi_ws_close.codes import (
    CLOSE_CODE_EXPLANATIONS,
    MAX_REASON_BYTES,
    OK_CLOSE_CODES,
    close_violation,
    is_valid_close_code,
    truncate_reason,
)


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


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, *range(1007, 1015), 3000, 3999, 4000, 4999])
def test_valid_wire_codes(code: int) -> None:
    assert is_valid_close_code(code)
    assert close_violation(code, "") is None


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535, -1])
def test_invalid_wire_codes_agree_with_websockets(code: int) -> None:
    assert not is_valid_close_code(code)
    violation = close_violation(code, "")
    assert violation is not None and f"close code {code}" in violation
    with pytest.raises(websockets.exceptions.ProtocolError):
        websockets.frames.Close(code, "").check()


@pytest.mark.parametrize(
    ("reason", "limit", "expected"),
    [
        ("short", 123, "short"),
        ("x" * 200, 123, "x" * 123),
        ("é" * 80, 123, "é" * 61),  # 2-byte characters: 122 bytes, not a split character
        ("€" * 41, 123, "€" * 41),  # exactly 123 bytes
        ("€" * 42, 123, "€" * 41),
        ("😀" * 40, 123, "😀" * 30),  # 4-byte characters: 120 bytes
        ("a\ud800b", 123, "a?b"),  # not encodable in UTF-8
        ("abc", 0, ""),
    ],
)
def test_truncate_reason_cuts_on_a_character_boundary(reason: str, limit: int, expected: str) -> None:
    cut = truncate_reason(reason, limit)
    assert cut == expected
    assert len(cut.encode("utf-8")) <= limit


def test_reason_rules() -> None:
    assert close_violation(1000, "€" * 41) is None
    violation = close_violation(1000, "€" * 42)
    assert violation is not None and "126 bytes" in violation and "123" in violation
    assert close_violation(1000, "\ud800") == "close reason is not valid UTF-8 (it contains a lone surrogate)"
    assert MAX_REASON_BYTES == 123


def test_str_sanitises_the_peers_reason_but_the_attribute_keeps_it() -> None:
    close = Close(4000, "line\nforged \x1b[31mred")
    assert str(close) == "4000 (private use) line\\nforged \\x1b[31mred"
    assert close.reason == "line\nforged \x1b[31mred"
