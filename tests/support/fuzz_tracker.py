"""A bounded fuzz run of the close-tracking logic, and the harness the property tests share.

Run it for a while::

    python -m tests.support.fuzz_tracker --seconds 60            # seeds 0, 1, 2, ... until time is up
    python -m tests.support.fuzz_tracker --seconds 600 --seed 1000

Each round runs hypothesis with a fixed seed (so a failure names the seed that reproduces it,
and hypothesis prints the shrunk example) on two targets, in turn:

* the sans-I/O :class:`CloseTracker`, fed any sequence of events (``receive``, ``send``,
  ``send`` with ``requested``, ``rejected_with_close``, ``send_failed``, ``app_exited``,
  ``app_cancelled``) under every server's quirks, with :func:`check_context` after each;
* the whole :class:`WebSocketCloseMiddleware`, with any policy, in front of a scripted app and
  a scripted server (:func:`run_middleware`), checked by :func:`check_middleware_run`.

``tests/test_properties.py`` uses the same strategies and checks, and runs this fuzz with a
quick bound (:func:`fuzz` with a fixed number of rounds).

The messages are odd on purpose (strategies :data:`INCOMING`, :data:`OUTGOING`): missing or
``None`` codes, IntEnum, bool, float, str and huge codes, huge, hostile and non-str reasons,
unknown message types, messages that are not mappings at all.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import itertools
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from asgi_ws_close import (
    SCOPE_KEY,
    Close,
    CloseCode,
    CloseContext,
    CloseRecord,
    ConnectionState,
    WebSocketCloseMiddleware,
    current_close_context,
)
from asgi_ws_close._servers import GENERIC, SERVERS
from asgi_ws_close._tracker import CloseTracker
from asgi_ws_close._types import ASGIApp, Receive, Scope, Send
from asgi_ws_close.codes import close_violation, is_valid_close_code

__all__ = [
    "HOOKS",
    "HOSTILE_REASONS",
    "INCOMING",
    "OUTGOING",
    "POLICIES",
    "SERVER_NAMES",
    "TRACKER_CASES",
    "AppCode",
    "AppScript",
    "Policy",
    "ServerScript",
    "Step",
    "TrackerEvent",
    "app_scripts",
    "check_any_policy",
    "check_context",
    "check_default_policy",
    "check_middleware_run",
    "fuzz",
    "main",
    "run_middleware",
    "run_tracker",
    "server_scripts",
]

CONNECTING = ConnectionState.CONNECTING
OPEN = ConnectionState.OPEN
CLOSING = ConnectionState.CLOSING
CLOSED = ConnectionState.CLOSED
REJECTED = ConnectionState.REJECTED

QUIRKS = [GENERIC, *SERVERS.values()]
SERVER_NAMES: list[str | None] = [None, "generic", *SERVERS]


# Values and messages.


class AppCode(enum.IntEnum):
    """An app's own close codes, as apps declare them."""

    NORMAL = 1000
    BYE = 4001
    NOPE = 4003


_INTERESTING_CODES = [1000, 1001, 1002, 1005, 1006, 1007, 1011, 1012, 1015, 3000, 4000, 4001, 4999, 5000, 999]

CODES: st.SearchStrategy[Any] = st.one_of(
    # Listed first (and twice): hypothesis shrinks towards, and draws often, the first branch.
    st.sampled_from(_INTERESTING_CODES),
    st.sampled_from([*CloseCode, *AppCode]),
    st.sampled_from(_INTERESTING_CODES),
    st.integers(1000, 1015),
    st.integers(3000, 4999),
    st.integers(0, 0xFFFF),
    st.integers(-(2**70), 2**70),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)

#: Reasons a peer may choose to hurt logs and terminals with (see also tests/test_hostile.py).
HOSTILE_REASONS = [
    "a\nb",
    "a\r\nINFO forged line",
    "\x1b[31mred\x1b[0m",
    "a\x00b",
    "€" * 41,  # 123 bytes of UTF-8: the most a close frame holds
    "€" * 42,  # 126 bytes: one character too many
    "\u202egnp.exe",
    "\ud800",  # a lone surrogate: not encodable as UTF-8
    "",
]

REASONS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.text(max_size=130),
    st.sampled_from(HOSTILE_REASONS),
    st.builds(lambda char, count: char * count, st.characters(), st.integers(0, 20_000)),
    st.binary(max_size=200),
    st.sampled_from([b"\xff\xfe", b"\xe2\x82", "€".encode() * 41]),
    st.integers(),
    st.floats(),
    st.lists(st.integers(), max_size=3),
)


def _message(kind: str, **optional: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"type": st.just(kind)}, optional=optional)


#: Things that are not ASGI websocket messages: unknown types, no type, not a mapping at all.
ODD: st.SearchStrategy[Any] = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["websocket.unknown", "http.request", "lifespan.startup", "", "WEBSOCKET.CLOSE"])},
        optional={"code": CODES, "reason": REASONS},
    ),
    st.fixed_dictionaries({"type": st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2))}),
    st.fixed_dictionaries({}, optional={"code": CODES, "reason": REASONS}),
    st.none(),
    st.integers(),
    st.text(max_size=10),
    st.sampled_from(["websocket.disconnect", "websocket.close"]),
    st.lists(st.integers(), max_size=2),
)

#: Disconnects in the words servers use for their own closes (shutdown, protocol errors).
SERVER_DISCONNECTS: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [
        {"code": 1012},
        {"code": 1002, "reason": "invalid status code"},
        {"code": 1002, "reason": "CLOSE with invalid code"},
        {"code": 1007, "reason": "invalid start byte at position 0"},
        {"code": 1009, "reason": "over size limit (3 > 2 bytes)"},
        {"code": 1005},
        {"code": 1005, "reason": ""},
        {"code": 1006},
        {"code": None},
    ]
).map(lambda fields: {"type": "websocket.disconnect", **fields})

#: What a server hands the app through receive().
INCOMING: st.SearchStrategy[Any] = st.one_of(
    _message("websocket.connect"),
    _message("websocket.receive", text=st.text(max_size=20), bytes=st.binary(max_size=20)),
    _message("websocket.disconnect", code=CODES, reason=REASONS),
    SERVER_DISCONNECTS,
    ODD,
)

_HEADERS = st.lists(st.tuples(st.binary(max_size=5), st.binary(max_size=5)), max_size=2)

#: What an app hands the server's send().
OUTGOING: st.SearchStrategy[Any] = st.one_of(
    _message("websocket.accept", subprotocol=st.none() | st.text(max_size=8), headers=_HEADERS),
    _message("websocket.send", text=st.text(max_size=20), bytes=st.binary(max_size=20)),
    _message("websocket.close", code=CODES, reason=REASONS),
    _message(
        "websocket.http.response.start",
        status=st.one_of(st.integers(100, 599), st.none(), st.text(max_size=3), st.booleans()),
        headers=_HEADERS,
    ),
    _message("websocket.http.response.body", body=st.binary(max_size=10), more_body=st.booleans()),
    ODD,
)


class AppAbort(BaseException):
    """An app error that is not an Exception (the middleware must pass it through too)."""


def _errors() -> st.SearchStrategy[BaseException]:
    # Fresh instances: identity is how the checks tell whose exception escaped.
    return st.one_of(
        st.builds(RuntimeError, st.sampled_from(["boom", "", "line\nbreak \x1b[31m"])),
        st.builds(ValueError, st.just("bad value")),
        st.builds(KeyError, st.just("key")),
        st.builds(AppAbort, st.just("abort")),
    )


def _server_errors() -> st.SearchStrategy[BaseException]:
    return st.one_of(
        st.builds(OSError, st.just("client disconnected")),
        st.builds(ConnectionResetError, st.just("reset")),
        st.builds(RuntimeError, st.just("Unexpected ASGI message 'websocket.send'")),
    )


# The invariants of a close record.

_PROPERTIES = [f.name for f in fields(CloseRecord)]
_INITIATORS = {None, "client", "app", "server"}
# What may not change once the connection has ended (clean and error may: an app that raises
# after the end makes it unclean).
_FROZEN_AFTER_END = (
    "state",
    "initiator",
    "code",
    "reason",
    "received",
    "sent",
    "requested",
    "received_then_sent",
    "http_status",
    "opened_at",
    "closed_at",
    "duration",
    "unknown",
)
_ALLOWED_MOVES = {
    (CONNECTING, OPEN),
    (CONNECTING, REJECTED),
    (CONNECTING, CLOSED),
    (OPEN, CLOSING),
    (OPEN, CLOSED),
    (CLOSING, CLOSED),
}


def _is_code(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_close(close: object, what: str) -> None:
    if close is None:
        return
    assert isinstance(close, Close), (what, close)
    assert _is_code(close.code), (what, close)
    assert isinstance(close.reason, str), (what, close)


def check_context(context: CloseContext, previous: CloseRecord | None = None) -> CloseRecord:
    """Assert every invariant of a close context, against its previous snapshot if given.

    Returns the context's snapshot, for the next call.
    """
    record = context.snapshot()
    # The snapshot is the live context, field by field.
    for name in _PROPERTIES:
        assert getattr(context, name) == getattr(record, name), name
    state = record.state
    assert isinstance(state, ConnectionState)
    ended = state >= CLOSED
    unknown = record.unknown
    assert unknown <= set(_PROPERTIES), unknown

    if not ended:
        assert record.code is None and record.clean is None and record.reason == ""
        assert record.closed_at is None and record.duration is None
    else:
        assert (record.code is None) == ("code" in unknown), record
        assert record.code is None or _is_code(record.code), record
        assert (record.clean is None) == ("clean" in unknown), record
        assert record.clean is None or isinstance(record.clean, bool), record
        assert record.closed_at is not None and record.closed_at >= record.opened_at, record
        assert record.duration is not None and record.duration >= 0, record
        if record.initiator is None:
            # Nobody closed: the transport was lost (1006), or the server could not say.
            assert record.code in (CloseCode.ABNORMAL_CLOSURE, None), record
    assert isinstance(record.reason, str)
    assert record.initiator in _INITIATORS, record
    if "initiator" in unknown:
        assert record.initiator is None
    for name in ("received", "sent", "requested"):
        _check_close(getattr(record, name), name)
    assert (record.sent is None) == (record.requested is None), record
    if record.received is not None:
        assert state is CLOSED and record.initiator in ("client", "server"), record
    if record.initiator == "client":
        assert record.received is not None and record.received_then_sent is True, record
    if record.received_then_sent is True:
        assert record.initiator == "client", record
    if record.received_then_sent is False:
        assert record.sent is not None or record.received is not None, record
    if state is REJECTED:
        assert record.received is None and record.initiator == "app", record
    if record.http_status is not None:
        assert state is REJECTED and isinstance(record.http_status, int), record
    if record.error is not None:
        assert record.clean is not True, record
    if record.clean is True and record.code == CloseCode.ABNORMAL_CLOSURE:
        # 1006 means "no close frame": clean only if the app itself put 1006 in its close.
        assert record.sent is not None and record.sent.code == CloseCode.ABNORMAL_CLOSURE, record
    assert record.sends_after_close >= 0
    # Counted (count_messages=True) or not counted at all, never half of it.
    assert (record.messages_received is None) is (record.messages_sent is None), record
    assert record.messages_received is None or record.messages_received >= 0 and record.messages_sent >= 0
    assert record.server is None or record.server in SERVERS, record

    # Readable and serialisable, always.
    as_dict = record.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict == context.to_dict()
    str(record), str(context), repr(context)

    if previous is not None:
        assert previous.state == state or (previous.state, state) in _ALLOWED_MOVES, (previous.state, state)
        if previous.state >= CLOSED:
            changed = [name for name in _FROZEN_AFTER_END if getattr(previous, name) != getattr(record, name)]
            if previous.state is REJECTED and previous.http_status is None and record.code == 1006:
                # A rejection by accept-then-close whose close the server failed to send: it
                # ended without that close frame after all (send_failed, by design).
                changed = [name for name in changed if name not in ("code", "reason")]
            assert changed == [], (changed, previous, record)
            assert previous.clean is not False or record.clean is not True
        assert record.sends_after_close >= previous.sends_after_close
        for name in ("messages_received", "messages_sent"):
            before, after = getattr(previous, name), getattr(record, name)
            assert (before is None and after is None) or after >= before, name
        if previous.error is not None:
            assert record.error is previous.error
    return record


# Target 1: the tracker.


class FakeClock:
    """A clock that moves forward by one second each time it is read."""

    def __init__(self, start: float) -> None:
        self._ticks = itertools.count()
        self._start = start

    def __call__(self) -> float:
        return self._start + next(self._ticks)


TrackerEvent = tuple[Any, ...]

TRACKER_EVENTS: st.SearchStrategy[list[TrackerEvent]] = st.lists(
    st.one_of(
        st.tuples(st.just("receive"), INCOMING),
        st.tuples(st.just("send"), OUTGOING),
        st.tuples(st.just("send-requested"), OUTGOING, OUTGOING),
        st.tuples(st.just("rejected-with-close"), OUTGOING, st.none() | OUTGOING),
        st.tuples(st.just("send-failed"), OUTGOING),
        st.tuples(st.just("app-exited"), st.none() | _errors()),
        st.tuples(st.just("app-cancelled")),
    ),
    max_size=12,
)


def _feed(tracker: CloseTracker, event: TrackerEvent) -> None:
    kind = event[0]
    if kind == "receive":
        tracker.receive(event[1])
    elif kind == "send":
        tracker.send(event[1])
    elif kind == "send-requested":
        tracker.send(event[1], requested=event[2])
    elif kind == "rejected-with-close":
        tracker.rejected_with_close(event[1], requested=event[2])
    elif kind == "send-failed":
        tracker.send_failed(event[1])
    elif kind == "app-exited":
        tracker.app_exited(event[1])
    else:
        tracker.app_cancelled()


def _fits(event: TrackerEvent) -> bool:
    # receive(), send() and send_failed() take anything the middleware may hand them (it
    # forwards non-mappings too); the others only ever get the dicts the middleware makes.
    if event[0] == "send-requested":
        return isinstance(event[2], Mapping)
    if event[0] == "rejected-with-close":
        return isinstance(event[1], Mapping) and (event[2] is None or isinstance(event[2], Mapping))
    return True


def run_tracker(quirks_index: int, events: Sequence[TrackerEvent], finish: str) -> CloseContext:
    """Feed ``events`` to a fresh tracker, checking every invariant after each, then end it."""
    tracker = CloseTracker(clock=FakeClock(100.0), wall_clock=FakeClock(1.7e9), quirks=QUIRKS[quirks_index])
    context = CloseContext._of(tracker)
    previous = check_context(context)
    for event in events:
        if not _fits(event):
            continue
        _feed(tracker, event)
        previous = check_context(context, previous)
    if finish == "cancel":
        tracker.app_cancelled()
    else:
        tracker.app_exited(None if finish == "return" else RuntimeError("boom"))
    record = check_context(context, previous)
    assert record.state in (CLOSED, REJECTED) and tracker.finished
    # Nothing moves after the app ended.
    tracker.app_exited(RuntimeError("again"))
    tracker.app_cancelled()
    assert check_context(context, record) == record
    return context


_OPENING: list[TrackerEvent] = [("receive", {"type": "websocket.connect"}), ("send", {"type": "websocket.accept"})]

#: (quirks index, events, how the app ends); most connections are accepted first.
TRACKER_CASES = st.tuples(
    st.integers(0, len(QUIRKS) - 1),
    st.tuples(st.booleans(), TRACKER_EVENTS).map(lambda case: (_OPENING if case[0] else []) + case[1]),
    st.sampled_from(["return", "raise", "cancel"]),
)


# Target 2: the middleware, between a scripted app and a scripted server.


@dataclass
class ServerScript:
    """What the scripted server does: the messages receive() returns, then ``tail`` for ever;
    the receive() or send() call (by index) that raises, and the receive() that cancels."""

    incoming: list[Any]
    tail: dict[str, Any]
    receive_error: tuple[int, BaseException] | None = None
    send_error: tuple[int, BaseException] | None = None
    cancel_at_receive: int | None = None


@dataclass
class Step:
    kind: Literal["receive", "send"]
    message: Any = None
    #: Let an exception from this call escape the app (else the app catches Exception).
    propagate: bool = False


@dataclass
class AppScript:
    steps: list[Step]
    ending: Literal["return", "raise", "cancel"]
    error: BaseException | None = None


@dataclass(frozen=True)
class Policy:
    """The middleware's options."""

    invalid_close: Literal["pass", "fix", "raise"] = "pass"
    close_on_error: bool = False
    reject_with_close_code: bool = False
    server: str | None = None
    count_messages: bool = False

    @property
    def default(self) -> bool:
        # count_messages changes no message: a counting middleware is as transparent.
        return self.invalid_close == "pass" and not self.close_on_error and not self.reject_with_close_code


@dataclass(frozen=True)
class HookCall:
    name: str
    context: CloseContext
    state: ConnectionState
    app_finished: bool
    current: bool
    scoped: bool


@dataclass
class SendCall:
    """One call of the app to send(): its message, what reached the server meanwhile, and
    the exception the app got."""

    message: Any
    forwarded: list[Any]
    error: BaseException | None


@dataclass
class Run:
    """What happened in one run of the scripts."""

    server_sent: list[Any] = field(default_factory=list)
    app_got: list[tuple[str, Any]] = field(default_factory=list)
    sends: list[SendCall] = field(default_factory=list)
    escaped: BaseException | None = None
    app_raised: BaseException | None = None
    app_finished: bool = False
    hooks: list[HookCall] = field(default_factory=list)
    context: CloseContext | None = None
    context_after: CloseContext | None = None
    snapshots: list[CloseRecord] = field(default_factory=list)
    server_errors: list[BaseException] = field(default_factory=list)
    logs: list[logging.LogRecord] = field(default_factory=list)


class ScriptedServer:
    def __init__(self, script: ServerScript, run: Run) -> None:
        self._script = script
        self._run = run
        self._receives = 0
        self._sends = 0

    async def receive(self) -> Any:
        index = self._receives
        self._receives += 1
        script = self._script
        if script.cancel_at_receive == index:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)  # raises CancelledError, as a server's shutdown does
        if script.receive_error is not None and script.receive_error[0] == index:
            self._run.server_errors.append(script.receive_error[1])
            raise script.receive_error[1]
        if index < len(script.incoming):
            return script.incoming[index]
        return script.tail

    async def send(self, message: Any) -> None:
        index = self._sends
        self._sends += 1
        self._run.server_sent.append(message)
        script = self._script
        if script.send_error is not None and script.send_error[0] == index:
            self._run.server_errors.append(script.send_error[1])
            raise script.send_error[1]


def _scripted_app(script: AppScript, run: Run) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            for step in script.steps:
                context = scope.get(SCOPE_KEY)
                if isinstance(context, CloseContext):
                    previous = run.snapshots[-1] if run.snapshots else None
                    run.snapshots.append(check_context(context, previous))
                    assert current_close_context() is context
                if step.kind == "receive":
                    try:
                        message = await receive()
                    except Exception as exc:
                        if step.propagate:
                            raise
                        run.app_got.append(("raised", exc))
                        continue
                    run.app_got.append(("message", message))
                    continue
                before = len(run.server_sent)
                try:
                    await send(step.message)
                except Exception as exc:
                    run.sends.append(SendCall(step.message, run.server_sent[before:], exc))
                    if step.propagate:
                        raise
                    run.app_got.append(("raised", exc))
                    continue
                run.sends.append(SendCall(step.message, run.server_sent[before:], None))
                run.app_got.append(("sent", None))
            if script.ending == "raise":
                assert script.error is not None
                raise script.error
            if script.ending == "cancel":
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
                await asyncio.sleep(0)
        except BaseException as exc:
            run.app_raised = exc
            raise
        finally:
            run.app_finished = True

    return app


def _hook(name: str, run: Run) -> Callable[[CloseContext, Scope], Any]:
    def record(context: CloseContext, scope: Scope) -> None:
        run.hooks.append(
            HookCall(
                name=name,
                context=context,
                state=context.state,
                app_finished=run.app_finished,
                current=current_close_context() is context,
                scoped=scope.get(SCOPE_KEY) is context,
            )
        )
        if name.startswith("failing"):
            raise RuntimeError(f"hook {name} failed")

    if name.startswith("async") or name.startswith("failing-async"):

        async def async_hook(context: CloseContext, scope: Scope) -> None:
            await asyncio.sleep(0)
            record(context, scope)

        return async_hook
    return record


HOOK_KINDS = ["sync", "async", "failing", "failing-async"]


def run_middleware(
    server_script: ServerScript,
    app_script: AppScript,
    *,
    policy: Policy | None,
    hooks: Sequence[str] = ("sync",),
    inner_hooks: Sequence[str] | None = None,
) -> Run:
    """Run the scripts once: bare (``policy=None``) or wrapped in the middleware (and, with
    ``inner_hooks``, in a second instance inside it)."""
    run = Run()
    server = ScriptedServer(server_script, run)
    app = _scripted_app(app_script, run)
    if policy is not None:
        outer_hooks = [_hook(f"{kind}-outer-{i}", run) for i, kind in enumerate(hooks)]
        if inner_hooks is not None:
            inner = [_hook(f"{kind}-inner-{i}", run) for i, kind in enumerate(inner_hooks)]
            app = WebSocketCloseMiddleware(app, on_close=inner)
        app = WebSocketCloseMiddleware(
            app,
            on_close=outer_hooks,
            invalid_close=policy.invalid_close,
            close_on_error=policy.close_on_error,
            reject_with_close_code=policy.reject_with_close_code,
            server=policy.server,
            count_messages=policy.count_messages,
        )
    # An ASGI spec version no real server reports: detection (server=None) finds no server's
    # fingerprint, whatever server modules this process imported, and uses the generic entry.
    asgi = {"version": "3.0", "spec_version": "2.1"}
    scope: Scope = {"type": "websocket", "path": "/ws", "headers": [], "asgi": asgi}

    async def main() -> None:
        try:
            await app(scope, server.receive, server.send)
        except BaseException as exc:  # noqa: B036 - the point is to see what escapes
            run.escaped = exc
        run.context_after = current_close_context()

    with _captured_logs() as logs:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()
    run.logs = logs
    context = scope.get(SCOPE_KEY)
    run.context = context if isinstance(context, CloseContext) else None
    return run


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _captured_logs() -> Iterator[list[logging.LogRecord]]:
    # The middleware logs a failing hook on "asgi_ws_close": keep it off stderr, count it.
    logger = logging.getLogger("asgi_ws_close")
    handler = _ListHandler()
    logger.addHandler(handler)
    propagate = logger.propagate
    logger.propagate = False
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


# The model the checks compare the middleware with: the ASGI spec's states and the documented
# policies (README, WebSocketCloseMiddleware's docstring), written independently of the core.


def _kind(message: object) -> object:
    if isinstance(message, dict):
        return message.get("type")
    return None


def lenient_close(message: Mapping[str, Any]) -> tuple[int, str]:
    """How the docs say a websocket.close is read: a missing or None code is 1000 (the ASGI
    default), anything int() accepts is that int, anything else is 1000; a missing or None
    reason is "", bytes are decoded as UTF-8 (errors replaced), anything else is str()."""
    raw_code = message.get("code")
    code = 1000
    if raw_code is not None:
        try:
            code = int(raw_code)
        except (TypeError, ValueError, OverflowError):
            code = 1000
    raw_reason = message.get("reason")
    if raw_reason is None:
        reason = ""
    elif isinstance(raw_reason, str):
        reason = raw_reason
    elif isinstance(raw_reason, (bytes, bytearray)):
        reason = bytes(raw_reason).decode("utf-8", "replace")
    else:
        reason = str(raw_reason)
    return code, reason


@dataclass
class Model:
    """The connection's state as the ASGI spec defines it, and the counts the docs promise."""

    policy: Policy
    state: ConnectionState = CONNECTING
    messages_received: int = 0
    messages_sent: int = 0
    sends_after_close: int = 0
    first_close: tuple[int, str] | None = None  # what went out for the app's first close
    first_requested: tuple[int, str] | None = None

    def received(self, message: object) -> None:
        kind = _kind(message)
        if kind == "websocket.receive":
            self.messages_received += 1
        elif kind == "websocket.disconnect" and self.state < CLOSED:
            self.state = CLOSED

    def expected_forward(self, message: object) -> tuple[list[Any] | None, Any]:
        """What should reach the server for the app's ``message`` (None: a ValueError), and
        the close to record (the repaired one under "fix")."""
        policy = self.policy
        kind = _kind(message)
        has_policy = policy.invalid_close != "pass" or policy.reject_with_close_code
        if kind != "websocket.close" or not has_policy or self.state > OPEN:
            return [message], message
        assert isinstance(message, dict)
        rejecting = self.state is CONNECTING
        if rejecting and not policy.reject_with_close_code:
            return [message], message
        outgoing: Any = message
        if policy.invalid_close != "pass":
            code, reason = lenient_close(message)
            if close_violation(code, reason) is not None:
                if policy.invalid_close == "raise":
                    return None, None
                outgoing = _Repaired(message)
        if rejecting:
            return [{"type": "websocket.accept"}, outgoing], outgoing
        return [outgoing], outgoing

    def sent(self, message: object, outgoing: object, *, rejecting_with_close: bool = False) -> None:
        kind = _kind(message)
        state = self.state
        if kind == "websocket.send":
            self.messages_sent += 1
            if state >= CLOSING:
                self.sends_after_close += 1
        elif kind == "websocket.accept":
            if state is CONNECTING:
                self.state = OPEN
            elif state >= CLOSING:
                self.sends_after_close += 1
        elif kind == "websocket.close":
            if state >= CLOSING:
                self.sends_after_close += 1
            else:
                self.state = REJECTED if state is CONNECTING else CLOSING
                assert isinstance(message, dict)
                self.first_requested = lenient_close(message)
                self.first_close = outgoing.close if isinstance(outgoing, _Repaired) else lenient_close(outgoing)
        elif kind == "websocket.http.response.start" and state is CONNECTING:
            self.state = REJECTED

    def exited(self, cancelled: bool) -> None:
        if self.state < CLOSED:
            self.state = CLOSED if cancelled or self.state is not CONNECTING else REJECTED


def repaired_close(code: int, reason: str) -> tuple[int, str]:
    """The documented repair of invalid_close="fix": 1005 becomes 1000, any other invalid code
    1011, a valid code stays; the reason is cut on a character boundary to at most 123 bytes
    of UTF-8 (lone surrogates, which UTF-8 cannot encode, become "?")."""
    fixed_code = code if is_valid_close_code(code) else (1000 if code == 1005 else 1011)
    readable = reason.encode("utf-8", "replace").decode("utf-8")
    cut = min(len(readable), 123)  # a character is at least one byte
    while len(readable[:cut].encode("utf-8")) > 123:
        cut -= 1
    return fixed_code, readable[:cut]


class _Repaired:
    """Stands for "a new dict: the app's close with the documented repair" in expectations."""

    def __init__(self, original: dict[str, Any]) -> None:
        self.original = original
        self.close = repaired_close(*lenient_close(original))


def _check_repair(repaired: _Repaired, actual: Any) -> None:
    original = repaired.original
    assert isinstance(actual, dict) and actual is not original, actual
    assert set(actual) == set(original) | {"code", "reason"}, (actual, original)
    for key in original:
        if key not in ("code", "reason"):
            assert actual[key] is original[key], key
    assert type(actual["code"]) is int and isinstance(actual["reason"], str), actual
    assert (actual["code"], actual["reason"]) == repaired.close, (actual, repaired.close)


def _is_cancellation(exc: BaseException | None) -> bool:
    return isinstance(exc, asyncio.CancelledError)


def check_middleware_run(
    run: Run,
    server_script: ServerScript,
    app_script: AppScript,
    policy: Policy,
    hooks: Sequence[str],
    inner_hooks: Sequence[str] | None = None,
    bare: Run | None = None,
) -> None:
    """Assert what the middleware promises about one run (and, given the bare run of the same
    scripts, that it changed nothing)."""
    context = run.context
    assert context is not None, "the middleware puts a CloseContext in the scope"

    if isinstance(run.app_raised, AssertionError):
        raise run.app_raised  # a check inside the app failed

    # 1. Forwarding, checked call by call against the model.
    model = Model(policy)
    got = 0  # index in run.app_got: one entry per step the app completed
    calls = 0  # index in run.sends: one entry per send() call
    receives = 0  # receive() calls so far, hence the server's script index
    forwarded_total: list[Any] = []
    for step in app_script.steps:
        if step.kind == "receive":
            if got >= len(run.app_got):
                break  # this receive() raised and the app let it escape
            kind, value = run.app_got[got]
            got += 1
            if kind == "message":
                incoming = server_script.incoming
                want = incoming[receives] if receives < len(incoming) else server_script.tail
                assert value is want, "receive() hands the app the server's own object"
                model.received(value)
            else:
                assert kind == "raised" and any(value is error for error in run.server_errors), value
            receives += 1
            continue
        if calls >= len(run.sends):
            break
        call = run.sends[calls]
        calls += 1
        assert call.message is step.message
        expected, outgoing = model.expected_forward(step.message)
        if expected is None:
            assert isinstance(call.error, ValueError) and "invalid_close='raise'" in str(call.error), call.error
            assert call.forwarded == []
        else:
            if call.error is None:
                assert len(call.forwarded) == len(expected), (call.forwarded, expected)
            else:
                # The server's exception, unchanged, is the one the app got.
                assert any(call.error is error for error in run.server_errors), call.error
                assert 1 <= len(call.forwarded) <= len(expected), (call.forwarded, expected)
            for actual, want_message in zip(call.forwarded, expected, strict=False):
                if isinstance(want_message, _Repaired):
                    _check_repair(want_message, actual)
                elif want_message is step.message:
                    assert actual is want_message, "forwarded unchanged: the app's own object"
                else:
                    assert actual == want_message, (actual, want_message)
            model.sent(step.message, outgoing)
            forwarded_total.extend(call.forwarded)
        if call.error is not None and step.propagate:
            break
        got += 1
    assert got == len(run.app_got) and calls == len(run.sends), "every step accounted for"
    # What reached the server beyond the app's own sends: only close_on_error's 1011.
    extra = run.server_sent[len(forwarded_total) :]
    assert run.server_sent[: len(forwarded_total)] == forwarded_total
    escaped = run.escaped
    app_error = escaped is not None and not _is_cancellation(escaped)
    if extra:
        assert policy.close_on_error and app_error and model.state is OPEN, extra
        assert extra == [{"type": "websocket.close", "code": 1011, "reason": ""}], extra
        model.sent(extra[0], extra[0])
    elif policy.close_on_error and app_error and model.state is OPEN:
        raise AssertionError("close_on_error: the app raised while open, and no 1011 went out")

    # 2. The exception that escaped is exactly the app's (its own, the server's it let through,
    # the documented ValueError of invalid_close="raise", or a cancellation).
    assert escaped is run.app_raised, (escaped, run.app_raised)
    if escaped is not None and not _is_cancellation(escaped):
        assert (
            escaped is app_script.error
            or any(escaped is error for error in run.server_errors)
            or (isinstance(escaped, ValueError) and "invalid_close='raise'" in str(escaped))
        ), escaped
    if bare is not None:
        assert policy.default
        assert len(bare.server_sent) == len(run.server_sent)
        # The very same objects, in the same order, both ways.
        assert all(a is b for a, b in zip(bare.server_sent, run.server_sent, strict=True))
        assert len(bare.app_got) == len(run.app_got)
        assert all(a[0] == b[0] and a[1] is b[1] for a, b in zip(bare.app_got, run.app_got, strict=True))
        if _is_cancellation(bare.escaped):
            assert _is_cancellation(escaped)
        else:
            assert escaped is bare.escaped

    # 3. The end state, against the model.
    model.exited(_is_cancellation(escaped))
    record = check_context(context, run.snapshots[-1] if run.snapshots else None)
    assert record.state is model.state, (record.state, model.state)
    assert record.state in (CLOSED, REJECTED)
    if policy.count_messages:
        assert (record.messages_received, record.messages_sent) == (model.messages_received, model.messages_sent)
    else:
        assert record.messages_received is None and record.messages_sent is None, record
    assert record.sends_after_close == model.sends_after_close
    if model.first_close is None:
        assert record.sent is None and record.requested is None, record
    else:
        assert record.sent is not None and (int(record.sent.code), record.sent.reason) == model.first_close
        assert record.requested is not None
        assert (int(record.requested.code), record.requested.reason) == model.first_requested
    if escaped is None or _is_cancellation(escaped):
        assert record.error is None
    else:
        assert record.error is escaped
        assert record.clean is not True
    assert run.context_after is None, "the contextvar is reset after the connection"

    # 4. on_close: each hook exactly once, in order, after the app ended, with its context.
    names = [f"{kind}-outer-{i}" for i, kind in enumerate(hooks)]
    if inner_hooks is not None:
        names += [f"{kind}-inner-{i}" for i, kind in enumerate(inner_hooks)]
    assert [call.name for call in run.hooks] == names
    for call in run.hooks:
        assert call.context is context and call.app_finished and call.current and call.scoped, call
        assert call.state >= CLOSED, call
    failing = sum(1 for name in names if name.startswith("failing"))
    hook_errors = [r for r in run.logs if r.levelno >= logging.ERROR and "on_close hook" in r.getMessage()]
    assert len(hook_errors) == failing, [r.getMessage() for r in run.logs]


# Strategies for whole runs.


@st.composite
def server_scripts(draw: st.DrawFn) -> ServerScript:
    first = draw(st.sampled_from(["connect", "connect", "connect", "other"]))
    incoming: list[Any] = [{"type": "websocket.connect"}] if first == "connect" else []
    incoming += draw(st.lists(INCOMING, max_size=8))
    tail = draw(st.one_of(_message("websocket.disconnect", code=CODES, reason=REASONS), SERVER_DISCONNECTS))
    receive_error = draw(st.none() | st.tuples(st.integers(0, 8), _server_errors()))
    send_error = draw(st.none() | st.tuples(st.integers(0, 8), _server_errors()))
    cancel = draw(st.none() | st.integers(0, 8))
    return ServerScript(incoming, tail, receive_error, send_error, cancel)


_APP_STEPS = st.one_of(
    st.builds(Step, st.just("receive"), st.none(), st.booleans()),
    st.builds(Step, st.just("send"), OUTGOING, st.booleans()),
    # A typical app: accept, a close, a send; weighted so that runs get past the handshake.
    st.builds(Step, st.just("send"), st.just({"type": "websocket.accept"}).map(dict), st.booleans()),
    st.builds(Step, st.just("send"), _message("websocket.close", code=CODES, reason=REASONS), st.booleans()),
)


@st.composite
def app_scripts(draw: st.DrawFn) -> AppScript:
    # Most apps receive the connect and accept first: that is where the close logic lives.
    steps = ([Step("receive"), Step("send", {"type": "websocket.accept"})] if draw(st.integers(0, 3)) else []) + draw(
        st.lists(_APP_STEPS, max_size=8)
    )
    ending = draw(st.sampled_from(["return", "return", "raise", "cancel"]))
    error = draw(_errors()) if ending == "raise" else None
    return AppScript(steps, ending, error)


POLICIES = st.builds(
    Policy,
    invalid_close=st.sampled_from(["pass", "fix", "raise"]),
    close_on_error=st.booleans(),
    reject_with_close_code=st.booleans(),
    server=st.sampled_from(SERVER_NAMES),
    count_messages=st.booleans(),
)
HOOKS = st.lists(st.sampled_from(HOOK_KINDS), min_size=1, max_size=3)


def check_default_policy(
    server_script: ServerScript,
    app_script: AppScript,
    server: str | None,
    hooks: Sequence[str],
    inner_hooks: Sequence[str] | None,
    *,
    count_messages: bool = False,
) -> None:
    """The default middleware (and a nested second instance) against the bare app."""
    bare = run_middleware(server_script, app_script, policy=None)
    policy = Policy(server=server, count_messages=count_messages)
    run = run_middleware(server_script, app_script, policy=policy, hooks=hooks, inner_hooks=inner_hooks)
    check_middleware_run(run, server_script, app_script, policy, hooks, inner_hooks, bare=bare)


def check_any_policy(server_script: ServerScript, app_script: AppScript, policy: Policy, hooks: Sequence[str]) -> None:
    run = run_middleware(server_script, app_script, policy=policy, hooks=hooks)
    check_middleware_run(run, server_script, app_script, policy, hooks)


# The fuzz run.


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        print_blob=True,
    )


def _round(target: str, round_seed: int, examples: int) -> None:
    if target == "tracker":

        @hypothesis_seed(round_seed)
        @_settings(examples)
        @given(TRACKER_CASES)
        def tracker_round(case: tuple[int, list[TrackerEvent], str]) -> None:
            run_tracker(*case)

        tracker_round()
    else:

        @hypothesis_seed(round_seed)
        @_settings(examples)
        @given(server_scripts(), app_scripts(), POLICIES, HOOKS)
        def middleware_round(
            server_script: ServerScript, app_script: AppScript, policy: Policy, hooks: list[str]
        ) -> None:
            if policy.default:
                check_default_policy(
                    server_script, app_script, policy.server, hooks, None, count_messages=policy.count_messages
                )
            else:
                check_any_policy(server_script, app_script, policy, hooks)

        middleware_round()


@dataclass
class FuzzResult:
    rounds: int
    examples: int
    seconds: float
    seeds: range


def fuzz(*, seconds: float, seed: int = 0, examples_per_round: int = 200, max_rounds: int | None = None) -> FuzzResult:
    """Run rounds (tracker, then middleware, in turn) until ``seconds`` or ``max_rounds``."""
    start = time.monotonic()
    rounds = 0
    while time.monotonic() - start < seconds and (max_rounds is None or rounds < max_rounds):
        round_seed = seed + rounds
        target = "tracker" if rounds % 2 == 0 else "middleware"
        try:
            _round(target, round_seed, examples_per_round)
        except BaseException:
            print(f"fuzz_tracker: {target} round with seed {round_seed} failed", file=sys.stderr)
            raise
        rounds += 1
    return FuzzResult(rounds, rounds * examples_per_round, time.monotonic() - start, range(seed, seed + rounds))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.fuzz_tracker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="the first round's seed (default 0)")
    parser.add_argument("--examples", type=int, default=200, help="examples per round (default 200)")
    args = parser.parse_args(argv)
    result = fuzz(seconds=args.seconds, seed=args.seed, examples_per_round=args.examples)
    print(
        f"fuzz_tracker: {result.examples} examples in {result.rounds} rounds "
        f"(seeds {result.seeds.start}..{result.seeds.stop - 1}), {result.seconds:.1f} s: no failure"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
