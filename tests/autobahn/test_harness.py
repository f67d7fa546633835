"""The Autobahn harness's own checks, on made-up data: no wstest, no server."""

from __future__ import annotations

import pytest

from tests.autobahn.harness import (
    CaseResult,
    Connection,
    case_key,
    check_connections,
    compare_variants,
    expected_on_close_code,
    section_of,
)


def _result(case: str, behavior: str = "OK", close: str = "OK", started: str = "2026-01-01T00:00Z") -> CaseResult:
    return CaseResult(case, behavior, close, 1000, started, closed_by_me=True)


def _conn(n: int, disconnect: dict[str, object], on_close_codes: list[int | None]) -> Connection:
    contexts: list[dict[str, object]] = [{"code": code, "error": None} for code in on_close_codes]
    return Connection(n, opened=1, disconnects=[{"type": "websocket.disconnect", **disconnect}], on_closes=contexts)


@pytest.mark.parametrize(
    ("disconnect", "code"),
    [
        ({"code": 1000, "reason": ""}, 1000),
        ({"code": 1002, "reason": "invalid opcode"}, 1002),
        ({"code": 1005, "reason": ""}, 1005),  # an empty close frame (7.3.1)
        ({"code": 1005}, 1006),  # uvicorn's connection_lost: no close frame
        ({"code": 1006}, 1006),
        ({"code": 1006, "reason": ""}, 1006),
        ({}, 1006),  # no code: ASGI's 1005, and no reason
        ({"code": None, "reason": ""}, 1005),
        ({"code": 1012}, 1012),
    ],
)
def test_expected_on_close_code(disconnect: dict[str, object], code: int) -> None:
    assert expected_on_close_code(disconnect) == code


def test_case_order_and_sections() -> None:
    cases = ["10.1.1", "9.1.1", "7.13.1", "7.1.6", "1.1.2", "1.1.10"]
    assert sorted(cases, key=case_key) == ["1.1.2", "1.1.10", "7.1.6", "7.13.1", "9.1.1", "10.1.1"]
    assert [section_of(case) for case in ("1.1.1", "9.2.3", "10.1.1")] == ["1", "9.2", "10"]


def test_check_connections_maps_cases_in_order_and_checks_codes() -> None:
    results = {"1.1.1": _result("1.1.1"), "7.13.1": _result("7.13.1"), "3.2": _result("3.2")}
    good = {
        0: _conn(0, {"code": 1000, "reason": ""}, [1000]),  # 1.1.1
        1: _conn(1, {"code": 1002, "reason": "x"}, [1002]),  # 3.2
        2: _conn(2, {"code": 1005}, [1006]),  # 7.13.1
    }
    assert check_connections("a", True, results, good) == []
    bad = {
        0: _conn(0, {"code": 1000, "reason": ""}, [1000, 1000]),
        1: _conn(1, {"code": 1002, "reason": "x"}, [1006]),
        2: _conn(2, {"code": 1005}, []),
    }
    problems = check_connections("a", True, results, bad)
    assert len(problems) == 3
    assert "case 1.1.1" in problems[0] and "2 on_close calls" in problems[0]
    assert "case 3.2" in problems[1] and "on_close code 1006" in problems[1]
    assert "case 7.13.1" in problems[2] and "0 on_close calls" in problems[2]
    # Without the middleware there must be no on_close at all.
    assert check_connections("a", False, results, good) != []
    # One connection too few: the cases cannot be mapped.
    assert "2 connections recorded for 3 cases" in check_connections("a", True, results, {0: good[0], 1: good[1]})[0]


def test_compare_variants_counts_non_strict_as_ok() -> None:
    def agents(plain: str, default: str, policies: str) -> dict[str, dict[str, CaseResult]]:
        return {
            "wsproto-plain": {"3.4": _result("3.4", plain)},
            "wsproto-default": {"3.4": _result("3.4", default)},
            "wsproto-policies": {"3.4": _result("3.4", policies)},
        }

    problems, notes = compare_variants("wsproto", agents("OK", "NON-STRICT", "OK"))
    assert problems == [] and len(notes) == 1
    assert compare_variants("wsproto", agents("OK", "OK", "OK")) == ([], [])
    problems, _ = compare_variants("wsproto", agents("OK", "INFORMATIONAL", "OK"))
    assert len(problems) == 1 and "differ" in problems[0]
