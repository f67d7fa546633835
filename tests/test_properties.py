"""Property tests (hypothesis): the close record is consistent and the middleware transparent,
for any sequence of ASGI messages in both directions.

The strategies, the scripted app and server, and the checks live in ``tests/support/fuzz_tracker.py``
(which also runs them for as long as one likes: ``python -m tests.support.fuzz_tracker --seconds N``).
What is checked, for every generated run:

* the tracker's invariants after every event (:func:`check_context`): the snapshot equals the
  live context field by field, ``to_dict()`` is JSON, the state only moves along the ASGI
  spec's transitions, an ended record never changes, ``code``/``clean`` are None exactly when
  unknown, ``initiator`` is client/app/server/None, closes are ``Close`` with int codes and str
  reasons, REJECTED has no received close, ``opened_at <= closed_at``, counts never go down;
* with the default options, against a run of the same scripts without the middleware: the
  very same message objects (identity) reach the server and the app, in the same order, and
  the same exception escapes (identity); with the policies on, call by call, exactly the
  documented repairs (a new dict for ``invalid_close="fix"``, nothing and a ValueError for
  ``"raise"``, accept-then-close for ``reject_with_close_code``, one 1011 for
  ``close_on_error``), and everything else unchanged;
* after the app returned, raised or was cancelled: the state is CLOSED or REJECTED, as the
  spec's state machine says; the counts of received, sent and late messages match; the
  contextvar is reset; every ``on_close`` hook ran exactly once, in order, after the app
  ended, with the connection's own context in the scope and the contextvar (a failing hook is
  logged, and stops neither the others nor the connection).

Quick mode (the default) runs a fixed, derandomized set of examples; ``ASGI_WS_CLOSE_FULL=1``
runs many more, randomized.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_ws_close import CloseCode, CloseContext, ConnectionState, WebSocketCloseMiddleware
from asgi_ws_close._tracker import CloseTracker
from asgi_ws_close._types import Message, Receive, Scope, Send
from tests.support.fuzz_tracker import (
    HOOKS,
    HOSTILE_REASONS,
    POLICIES,
    SERVER_NAMES,
    TRACKER_CASES,
    AppCode,
    AppScript,
    Policy,
    ServerScript,
    Step,
    TrackerEvent,
    app_scripts,
    check_any_policy,
    check_default_policy,
    fuzz,
    run_tracker,
    server_scripts,
)
from tests.support.reliabilityapp import FULL

EXAMPLES = 2_000 if FULL else 150

# Full mode runs longer than the project-wide 120 s per test.
pytestmark = [pytest.mark.timeout(900)] if FULL else []

PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # Quick mode is reproducible: the same examples on every run (and no example database).
    derandomize=not FULL,
    database=None if not FULL else settings.default.database,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY_SETTINGS
@given(TRACKER_CASES)
def test_tracker_invariants_hold_for_any_events(case: tuple[int, list[TrackerEvent], str]) -> None:
    run_tracker(*case)


@PROPERTY_SETTINGS
@given(server_scripts(), app_scripts(), st.sampled_from(SERVER_NAMES), HOOKS, st.none() | HOOKS, st.booleans())
def test_the_default_middleware_forwards_everything_unchanged(
    server_script: ServerScript,
    app_script: AppScript,
    server: str | None,
    hooks: list[str],
    inner_hooks: list[str] | None,
    count_messages: bool,
) -> None:
    check_default_policy(server_script, app_script, server, hooks, inner_hooks, count_messages=count_messages)


@PROPERTY_SETTINGS
@given(server_scripts(), app_scripts(), POLICIES.filter(lambda policy: not policy.default), HOOKS)
def test_policies_forward_exactly_the_documented_repairs(
    server_script: ServerScript, app_script: AppScript, policy: Policy, hooks: list[str]
) -> None:
    check_any_policy(server_script, app_script, policy, hooks)


# The odd messages the issue names, every time, in both directions, under every policy.


class Opaque:
    """A reason that is neither str nor bytes (its str() is what the record keeps)."""

    def __str__(self) -> str:
        return "opaque"


ODD_CLOSES: dict[str, dict[str, Any]] = {
    "no-code": {},
    "code-none": {"code": None},
    "intenum": {"code": AppCode.BYE, "reason": "bye"},
    "closecode": {"code": CloseCode.GOING_AWAY},
    "bool-code": {"code": True},
    "huge-code": {"code": 2**80},
    "str-code": {"code": "4001"},
    "nan-code": {"code": float("nan")},
    "reason-none": {"code": 4000, "reason": None},
    "huge-reason": {"code": 4000, "reason": "x" * 100_000},
    "bytes-reason": {"code": 4000, "reason": b"\xff\xfebytes"},
    "int-reason": {"code": 4000, "reason": 42},
    "object-reason": {"code": 4000, "reason": Opaque()},
    **{f"hostile-{i}": {"code": 4000, "reason": reason} for i, reason in enumerate(HOSTILE_REASONS)},
}
ODD_OTHERS: dict[str, Any] = {
    "unknown-type": {"type": "websocket.unknown", "code": 4000},
    "no-type": {"code": 4000},
    "type-none": {"type": None},
    "not-a-mapping": "websocket.close",
    "none": None,
}
ALL_POLICIES = [
    pytest.param(Policy(), id="default"),
    pytest.param(Policy(count_messages=True), id="count_messages"),
    pytest.param(Policy(invalid_close="fix"), id="fix"),
    pytest.param(Policy(invalid_close="raise"), id="raise"),
    pytest.param(Policy(close_on_error=True), id="close_on_error"),
    pytest.param(Policy(reject_with_close_code=True), id="reject_with_close_code"),
    pytest.param(
        Policy(invalid_close="fix", reject_with_close_code=True, close_on_error=True, count_messages=True), id="all"
    ),
]


def _check(server_script: ServerScript, app_script: AppScript, policy: Policy) -> None:
    if policy.default:
        check_default_policy(
            server_script, app_script, None, ["sync", "async"], ["failing"], count_messages=policy.count_messages
        )
    else:
        check_any_policy(server_script, app_script, policy, ["sync", "failing-async"])


@pytest.mark.parametrize("policy", ALL_POLICIES)
@pytest.mark.parametrize("accepted", [True, False], ids=["after-accept", "before-accept"])
@pytest.mark.parametrize("name", list(ODD_CLOSES))
def test_odd_closes_from_the_app(name: str, accepted: bool, policy: Policy) -> None:
    close = {"type": "websocket.close", **ODD_CLOSES[name]}
    steps = [Step("receive"), *([Step("send", {"type": "websocket.accept"})] if accepted else [])]
    steps += [Step("send", close), Step("receive"), Step("send", {"type": "websocket.send", "text": "late"})]
    server = ServerScript([{"type": "websocket.connect"}], {"type": "websocket.disconnect", "code": 4000})
    _check(server, AppScript(steps, "return"), policy)


@pytest.mark.parametrize("policy", ALL_POLICIES[:3])
@pytest.mark.parametrize("ending", ["return", "raise", "cancel"])
@pytest.mark.parametrize("name", list(ODD_CLOSES) + list(ODD_OTHERS))
def test_odd_messages_from_the_server(name: str, ending: Literal["return", "raise", "cancel"], policy: Policy) -> None:
    odd = ODD_OTHERS[name] if name in ODD_OTHERS else {"type": "websocket.disconnect", **ODD_CLOSES[name]}
    server = ServerScript([{"type": "websocket.connect"}, odd], {"type": "websocket.disconnect", "code": 1006})
    steps = [Step("receive"), Step("send", {"type": "websocket.accept"}), Step("receive"), Step("receive")]
    error = RuntimeError("boom") if ending == "raise" else None
    _check(server, AppScript(steps, ending, error), policy)


@pytest.mark.parametrize("policy", ALL_POLICIES[:3])
@pytest.mark.parametrize("name", list(ODD_OTHERS))
def test_odd_messages_from_the_app(name: str, policy: Policy) -> None:
    steps = [Step("receive"), Step("send", {"type": "websocket.accept"}), Step("send", ODD_OTHERS[name])]
    steps.append(Step("receive"))
    server = ServerScript([{"type": "websocket.connect"}], {"type": "websocket.disconnect", "code": 1000})
    _check(server, AppScript(steps, "return"), policy)


# The bounded fuzz run, with a quick bound (a fixed number of seeded rounds).


def test_fuzz_run_quick_bound() -> None:
    rounds = 8 if FULL else 2
    result = fuzz(seconds=600, seed=10_000, examples_per_round=150, max_rounds=rounds)
    assert result.rounds == rounds


# Core bugs found by this tier (fixed since): each test asserts the right behaviour.


def test_str_and_repr_of_a_record_whose_code_is_unknown() -> None:
    # An unknown server (generic quirks) reports a disconnect 1005 without a reason key: a
    # drop or an empty close frame, it cannot say. The record's code is rightly unknown, and
    # the record still reads (this raised AssertionError before c694451).
    tracker = CloseTracker()
    tracker.receive({"type": "websocket.connect"})
    tracker.send({"type": "websocket.accept"})
    tracker.receive({"type": "websocket.disconnect", "code": 1005})
    context = CloseContext._of(tracker)
    assert context.state is ConnectionState.CLOSED and context.code is None and "code" in context.unknown
    for text in (str(context), repr(context), str(context.snapshot())):
        assert "closed by nobody: unknown" in text


class RaisingStr:
    def __str__(self) -> str:
        raise RuntimeError("__str__ failed")


def test_a_reason_whose_str_raises_is_no_error_of_the_middleware() -> None:
    got: list[Any] = []
    odd: Message = {"type": "websocket.disconnect", "code": 4000, "reason": RaisingStr()}
    incoming: list[Message] = [{"type": "websocket.connect"}, odd]

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        pass

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        got.append(await receive())

    asyncio.run(WebSocketCloseMiddleware(app)({"type": "websocket"}, receive, send))
    assert got == [odd]


def test_a_refused_second_close_does_not_spoil_the_first() -> None:
    records: list[dict[str, Any]] = []
    incoming: list[Message] = [
        {"type": "websocket.connect"},
        {"type": "websocket.disconnect", "code": 4000, "reason": "bye"},
    ]
    closes: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        if message["type"] == "websocket.close":
            if closes:
                raise RuntimeError("Unexpected ASGI message 'websocket.close', after sending 'websocket.close'.")
            closes.append(message)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
        with pytest.raises(RuntimeError):
            await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
        await receive()

    def hook(context: CloseContext, scope: Scope) -> None:
        records.append(json.loads(json.dumps(context.to_dict())))

    asyncio.run(WebSocketCloseMiddleware(app, on_close=hook)({"type": "websocket"}, receive, send))
    record = records[0]
    assert record["sends_after_close"] == 1
    assert (record["initiator"], record["code"], record["reason"], record["clean"]) == ("app", 4000, "bye", True)
