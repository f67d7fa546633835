"""The Prometheus integration: code labels, the metrics, the gauge's middleware, real servers.

* ``code_label``: exact labels, and a bound that no code can break.
* ``PrometheusCloseMetrics`` on a private registry: one sample per scenario, names, options.
* The active-connections middleware, in process: up while a WebSocket is served, down after
  a return, a raise or a cancellation; nothing for other scopes.
* The ``outcome`` label, through the middleware in process: one value per way a connection
  ends, ``unknown`` where the server cannot tell, and never a value outside those nine.
* Dead workers in multiprocess mode, with real processes killed by SIGKILL:
  :func:`mark_dead_workers` removes only the live-gauge files of PIDs that no longer run
  (zombies included), at each collection of :class:`LiveMultiProcessCollector` and when
  :class:`PrometheusCloseMetrics` starts in a worker; counters and histograms stay.
* Real uvicorn (``server`` marker): ``--workers 2`` in multiprocess mode scraped over HTTP
  with exact counts, and 10,000 connections with distinct codes and hostile reasons whose
  labels stay bounded and whose log lines stay clean.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode

import pytest

# A clear skip, not a collection error, where the test dependency group is not installed.
pytest.importorskip("prometheus_client", reason='needs prometheus-client (pip install "asgi-ws-close[prometheus]")')

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware
from asgi_ws_close._codes import Close
from asgi_ws_close._servers import SERVERS, Wire
from asgi_ws_close._tracker import CloseTracker
from asgi_ws_close._types import Message, Outcome, Receive, Scope, Send
from asgi_ws_close.integrations import CODE_LABELS, code_label, sanitize_reason
from asgi_ws_close.integrations.prometheus import (
    DEFAULT_DURATION_BUCKETS,
    LiveMultiProcessCollector,
    PrometheusCloseMetrics,
    exposition_registry,
    mark_dead_workers,
)
from tests.support.asgi import OUTCOMES

CLOSES = "websocket_server_closes_total"
DURATION = "websocket_server_connection_duration_seconds"
ACTIVE = "websocket_server_active_connections"

#: Every value the ``outcome`` label may take: the eight outcomes, and "unknown".
OUTCOME_LABELS = OUTCOMES | {"unknown"}


# code_label.


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (1000, "1000"),
        (1001, "1001"),
        (1003, "1003"),
        (1004, "1xxx"),  # reserved
        (1005, "1005"),
        (1006, "1006"),
        (1011, "1011"),
        (1015, "1015"),
        (1016, "1xxx"),
        (1999, "1xxx"),
        (2000, "2xxx"),
        (2999, "2xxx"),
        (3000, "3xxx"),
        (3999, "3xxx"),
        (4000, "4xxx"),
        (4001, "4xxx"),
        (4999, "4xxx"),
        (5000, "other"),
        (999, "other"),
        (0, "other"),
        (-1, "other"),
        (65535, "other"),
        (None, "none"),
    ],
)
def test_code_label(code: int | None, expected: str) -> None:
    assert code_label(code) == expected


def test_code_label_keeps_the_codes_asked_for() -> None:
    keep = frozenset({4001, 3003, 7000})
    assert [code_label(code, keep) for code in (4001, 4002, 3003, 7000, 1000)] == [
        "4001",
        "4xxx",
        "3003",
        "7000",
        "1000",
    ]


def test_code_label_takes_intenum_members() -> None:
    from asgi_ws_close import CloseCode

    assert code_label(CloseCode.GOING_AWAY) == "1001"


def test_no_code_escapes_the_label_set() -> None:
    labels = {code_label(code) for code in range(-10, 70_000)} | {code_label(None)}
    assert labels == CODE_LABELS
    assert len(CODE_LABELS) == 21


# The metrics, fed contexts by hand.


def _context(*events: tuple[str, Message], error: BaseException | None = None, duration: float = 2.5) -> CloseContext:
    times = iter([0.0, duration])
    tracker = CloseTracker(clock=lambda: next(times))
    for direction, message in events:
        getattr(tracker, direction)(message)
    tracker.app_exited(error)
    return CloseContext._of(tracker)


CONNECT = ("receive", {"type": "websocket.connect"})
ACCEPT = ("send", {"type": "websocket.accept"})


def _disconnect(code: int, reason: str | None = "") -> tuple[str, Message]:
    # reason=None: no reason key at all, as in uvicorn's shutdown disconnect (1012).
    if reason is None:
        return ("receive", {"type": "websocket.disconnect", "code": code})
    return ("receive", {"type": "websocket.disconnect", "code": code, "reason": reason})


SCENARIOS: list[tuple[str, CloseContext, tuple[str, str, str, str]]] = [
    ("client", _context(CONNECT, ACCEPT, _disconnect(4001, "bye")), ("client", "4001", "true", "client_closed")),
    (
        "client-private",
        _context(CONNECT, ACCEPT, _disconnect(4321, "x")),
        ("client", "4xxx", "true", "client_closed"),
    ),
    (
        "client-library",
        _context(CONNECT, ACCEPT, _disconnect(3008, "x")),
        ("client", "3xxx", "true", "client_closed"),
    ),
    ("client-1000", _context(CONNECT, ACCEPT, _disconnect(1000)), ("client", "1000", "true", "client_closed")),
    (
        "app",
        _context(CONNECT, ACCEPT, ("send", {"type": "websocket.close", "code": 4003}), _disconnect(4003)),
        ("app", "4xxx", "true", "app_closed"),
    ),
    ("lost", _context(CONNECT, ACCEPT, _disconnect(1006)), ("none", "1006", "false", "dropped")),
    (
        "server-restart",
        _context(CONNECT, ACCEPT, _disconnect(1012, None)),
        ("server", "1012", "true", "server_shutdown"),
    ),
    (
        "app-raised",
        _context(CONNECT, ACCEPT, error=RuntimeError("boom")),
        ("app", "1006", "false", "app_error"),
    ),
    (
        "rejected",
        _context(CONNECT, ("send", {"type": "websocket.close", "code": 4001})),
        ("app", "1006", "false", "rejected"),
    ),
]


@pytest.mark.parametrize(("context", "labels"), [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_each_close_is_counted_once_with_bounded_labels(
    context: CloseContext, labels: tuple[str, str, str, str]
) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry, keep_codes={4001})
    metrics.on_close(context, {"type": "websocket"})
    initiator, code, clean, outcome = labels
    assert (
        registry.get_sample_value(CLOSES, {"initiator": initiator, "code": code, "clean": clean, "outcome": outcome})
        == 1.0
    )
    assert _total(registry, CLOSES) == 1.0
    histogram = {"initiator": initiator, "clean": clean, "outcome": outcome}
    assert registry.get_sample_value(f"{DURATION}_count", histogram) == 1.0
    assert registry.get_sample_value(f"{DURATION}_sum", histogram) == 2.5
    assert registry.get_sample_value(f"{DURATION}_bucket", {**histogram, "le": "1.0"}) == 0.0
    assert registry.get_sample_value(f"{DURATION}_bucket", {**histogram, "le": "5.0"}) == 1.0


def _total(registry: CollectorRegistry, name: str) -> float:
    return sum(sample.value for metric in registry.collect() for sample in metric.samples if sample.name == name)


def test_reasons_are_never_labels() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry)
    for i in range(200):
        metrics.on_close(_context(CONNECT, ACCEPT, _disconnect(3000 + i, f"reason {i}\n")), {})
    exposition = generate_latest(registry).decode()
    assert "reason" not in exposition
    assert (
        registry.get_sample_value(
            CLOSES, {"initiator": "client", "code": "3xxx", "clean": "true", "outcome": "client_closed"}
        )
        == 200.0
    )


def test_a_live_connection_is_not_counted() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry)
    tracker = CloseTracker()
    tracker.send({"type": "websocket.accept"})
    metrics.on_close(CloseContext._of(tracker), {})
    assert _total(registry, CLOSES) == 0.0


def test_names_help_and_buckets() -> None:
    registry = CollectorRegistry()
    PrometheusCloseMetrics(registry=registry)
    exposition = generate_latest(registry).decode()
    for line in (
        f"# TYPE {CLOSES} counter",
        f"# TYPE {DURATION} histogram",
        f"# TYPE {ACTIVE} gauge",
        f"{ACTIVE} 0.0",
    ):
        assert line in exposition
    assert DEFAULT_DURATION_BUCKETS[0] == 0.01 and DEFAULT_DURATION_BUCKETS[-1] == 86400.0


def test_duration_buckets() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry, duration_buckets=(1.0, 10.0))
    metrics.on_close(_context(CONNECT, ACCEPT, _disconnect(1000), duration=5.0), {})
    buckets = {
        sample.labels["le"]: sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == f"{DURATION}_bucket"
    }
    assert buckets == {"1.0": 0.0, "10.0": 1.0, "+Inf": 1.0}


def test_namespace_and_subsystem() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry, namespace="chat", subsystem="ws")
    metrics.on_close(_context(CONNECT, ACCEPT, _disconnect(1000)), {})
    assert registry.get_sample_value(
        "chat_ws_closes_total", {"initiator": "client", "code": "1000", "clean": "true", "outcome": "client_closed"}
    )


def test_registering_twice_is_refused_by_prometheus_client() -> None:
    registry = CollectorRegistry()
    PrometheusCloseMetrics(registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusCloseMetrics(registry=registry)


def test_no_registry() -> None:
    metrics = PrometheusCloseMetrics(registry=None)
    metrics.on_close(_context(CONNECT, ACCEPT, _disconnect(1000)), {})
    [family] = metrics.closes.collect()
    assert [(sample.labels, sample.value) for sample in family.samples if sample.name == CLOSES] == [
        ({"initiator": "client", "code": "1000", "clean": "true", "outcome": "client_closed"}, 1.0)
    ]


def test_the_default_registry_is_prometheus_clients() -> None:
    import prometheus_client

    # Bound at import, as prometheus-client's own metrics bind theirs.
    assert (PrometheusCloseMetrics.__init__.__kwdefaults__ or {})["registry"] is prometheus_client.REGISTRY


def test_a_clear_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # what a missing package looks like
    monkeypatch.delitem(sys.modules, "asgi_ws_close.integrations.prometheus")
    with pytest.raises(ImportError, match=r'pip install "asgi-ws-close\[prometheus\]"'):
        importlib.import_module("asgi_ws_close.integrations.prometheus")


# The active-connections middleware, in process.


def _scope(kind: str = "websocket") -> Scope:
    return {"type": kind, "path": "/ws", "query_string": b"", "headers": []}


async def _never_receive() -> Message:
    raise AssertionError("not called")


async def _ignore_send(message: Message) -> None:
    pass


def _run_with_gauge(app: Callable[[Scope, Receive, Send], Awaitable[None]], kind: str = "websocket") -> list[float]:
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry)
    seen: list[float] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(registry.get_sample_value(ACTIVE) or 0.0)
        await app(scope, receive, send)

    wrapped = metrics.middleware(inner)

    async def main() -> None:
        try:
            await wrapped(_scope(kind), _never_receive, _ignore_send)
        finally:
            seen.append(registry.get_sample_value(ACTIVE) or 0.0)

    try:
        asyncio.run(main())
    except BaseException:
        pass
    return seen


async def _returns(scope: Scope, receive: Receive, send: Send) -> None:
    pass


async def _raises(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("boom")


async def _cancelled(scope: Scope, receive: Receive, send: Send) -> None:
    raise asyncio.CancelledError


@pytest.mark.parametrize("app", [_returns, _raises, _cancelled], ids=["returns", "raises", "cancelled"])
def test_the_gauge_follows_each_websocket(app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
    assert _run_with_gauge(app) == [1.0, 0.0]


@pytest.mark.parametrize("kind", ["http", "lifespan"])
def test_other_scopes_leave_the_gauge_alone(kind: str) -> None:
    assert _run_with_gauge(_returns, kind) == [0.0, 0.0]


def test_the_middleware_passes_receive_and_send_untouched() -> None:
    metrics = PrometheusCloseMetrics(registry=CollectorRegistry())
    got: list[object] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        got.extend([receive, send])

    async def main() -> None:
        await metrics.middleware(app)(_scope(), _never_receive, _ignore_send)

    asyncio.run(main())
    assert got == [_never_receive, _ignore_send]


def test_the_starlette_recipe() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry)
    inside: list[float | None] = []

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        inside.append(registry.get_sample_value(ACTIVE))
        try:
            await websocket.receive_text()
        except WebSocketDisconnect:
            pass

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    app.add_middleware(WebSocketCloseMiddleware, on_close=metrics.on_close)
    app.add_middleware(metrics.middleware)
    with TestClient(app).websocket_connect("/ws") as websocket:
        websocket.close(4001, "bye")
    assert inside == [1.0]
    assert registry.get_sample_value(ACTIVE) == 0.0
    assert (
        registry.get_sample_value(
            CLOSES, {"initiator": "client", "code": "4xxx", "clean": "true", "outcome": "client_closed"}
        )
        == 1.0
    )


# The outcome label, through the middleware in process.


def test_the_outcome_labels_are_the_outcome_type_and_unknown() -> None:
    assert frozenset(get_args(Outcome)) == OUTCOMES
    assert len(OUTCOME_LABELS) == 9


def _endpoint(action: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        if action == "reject":
            await send({"type": "websocket.close", "code": 4001})
            return
        if action == "deny":
            await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b""})
            return
        if action == "raise-before-accept":
            raise RuntimeError("boom")
        if action == "wait-before-accept":
            await receive()  # the client leaves during the handshake
            return
        await send({"type": "websocket.accept"})
        if action == "raise":
            raise RuntimeError("boom")
        if action == "return":
            return
        if action == "close":
            await send({"type": "websocket.close", "code": 4003, "reason": "nope"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    return app


def _serve(
    metrics: PrometheusCloseMetrics,
    action: str,
    inbound: list[Message],
    *,
    server: str | None = None,
    seen: list[CloseContext] | None = None,
) -> None:
    """Run one connection through the middleware, with ``metrics.on_close`` as its hook."""
    hooks: list[Any] = [metrics.on_close]
    if seen is not None:
        hooks.append(lambda context, scope: seen.append(context))
    app = metrics.middleware(WebSocketCloseMiddleware(_endpoint(action), on_close=hooks, server=server))
    pending = list(inbound)

    async def receive() -> Message:
        return pending.pop(0)

    async def main() -> None:
        scope: Scope = {**_scope(), "http_version": "1.1"}
        try:
            await app(scope, receive, _ignore_send)
        except RuntimeError as exc:  # the app's own error, re-raised by the middleware
            assert str(exc) == "boom"

    asyncio.run(main())


def _disconnect_message(code: int | None, reason: str | None = "") -> Message:
    message: Message = {"type": "websocket.disconnect", "code": code}
    if reason is not None:
        message["reason"] = reason
    return message


def _closes(registry: CollectorRegistry) -> dict[tuple[str, str, str, str], float]:
    return {
        (sample.labels["initiator"], sample.labels["code"], sample.labels["clean"], sample.labels["outcome"]): (
            sample.value
        )
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == CLOSES
    }


def _duration_counts(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    return {
        (sample.labels["initiator"], sample.labels["clean"], sample.labels["outcome"]): sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == f"{DURATION}_count"
    }


WS_CONNECT: Message = {"type": "websocket.connect"}

OUTCOME_SCENARIOS: list[tuple[str, str, list[Message], tuple[str, str, str, str]]] = [
    (
        "client_closed",
        "echo",
        [WS_CONNECT, _disconnect_message(4001, "bye")],
        ("client", "4001", "true", "client_closed"),
    ),
    (
        "client_closed-empty",
        "echo",
        [WS_CONNECT, _disconnect_message(1005, "")],
        ("client", "1005", "true", "client_closed"),
    ),
    ("app_closed", "close", [WS_CONNECT, _disconnect_message(4003, "nope")], ("app", "4xxx", "true", "app_closed")),
    # The generic reading: the server closes with no frame after an app returns after accept.
    ("app_closed-return", "return", [WS_CONNECT], ("app", "1006", "false", "app_closed")),
    ("rejected-close", "reject", [WS_CONNECT], ("app", "1006", "false", "rejected")),
    ("rejected-denial", "deny", [WS_CONNECT], ("app", "1006", "false", "rejected")),
    ("app_error", "raise", [WS_CONNECT], ("app", "1006", "false", "app_error")),
    ("app_error-before-accept", "raise-before-accept", [WS_CONNECT], ("app", "1006", "false", "app_error")),
    ("dropped", "echo", [WS_CONNECT, _disconnect_message(1006)], ("none", "1006", "false", "dropped")),
    (
        "dropped-in-handshake",
        "wait-before-accept",
        [WS_CONNECT, _disconnect_message(1006)],
        ("none", "1006", "false", "dropped"),
    ),
    (
        "server_shutdown",
        "echo",
        [WS_CONNECT, _disconnect_message(1012, None)],
        ("server", "1012", "true", "server_shutdown"),
    ),
    (
        "server_error",
        "echo",
        [WS_CONNECT, _disconnect_message(1002, "invalid status code")],
        ("server", "1002", "false", "server_error"),
    ),
]


@pytest.mark.parametrize(
    ("action", "inbound", "labels"), [s[1:] for s in OUTCOME_SCENARIOS], ids=[s[0] for s in OUTCOME_SCENARIOS]
)
def test_the_outcome_label_through_the_middleware(
    action: str, inbound: list[Message], labels: tuple[str, str, str, str]
) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry, keep_codes={4001})
    seen: list[CloseContext] = []
    _serve(metrics, action, inbound, seen=seen)
    [context] = seen
    assert context.outcome == labels[3]
    assert _closes(registry) == {labels: 1.0}
    initiator, _, clean, outcome = labels
    assert _duration_counts(registry) == {(initiator, clean, outcome): 1.0}
    assert registry.get_sample_value(ACTIVE) == 0.0


@pytest.mark.parametrize(
    ("wire", "labels"),
    [
        (
            Wire(sent=Close(1011, "keepalive ping timeout"), received_first=False, cause="timeout"),
            ("server", "1011", "false", "server_timeout"),
        ),
        (Wire(cause="timeout"), ("server", "1006", "false", "server_timeout")),
        (
            Wire(sent=Close(1001, ""), received_first=False, cause="shutdown"),
            ("server", "1001", "true", "server_shutdown"),
        ),
        (Wire(sent=Close(1002, ""), received_first=False, cause="error"), ("server", "1002", "false", "server_error")),
    ],
    ids=["timeout", "timeout-no-frame", "shutdown", "error"],
)
def test_the_outcome_label_of_what_only_the_server_knows(wire: Wire, labels: tuple[str, str, str, str]) -> None:
    # A keepalive timeout is a lost connection in the ASGI messages: only a probe of the
    # server's connection object tells it, so the tracker is fed that probe's reading.
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry)
    tracker = CloseTracker(clock=iter([0.0, 2.5]).__next__)
    tracker.receive({"type": "websocket.connect"})
    tracker.send({"type": "websocket.accept"})
    tracker.receive({"type": "websocket.disconnect", "code": 1006}, wire=wire)
    tracker.app_exited()
    metrics.on_close(CloseContext._of(tracker), _scope())
    assert _closes(registry) == {labels: 1.0}
    assert _duration_counts(registry) == {(labels[0], labels[2], labels[3]): 1.0}


def test_a_cancelled_app_is_a_server_shutdown() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry)
    tracker = CloseTracker(clock=iter([0.0, 2.5]).__next__)
    tracker.receive({"type": "websocket.connect"})
    tracker.send({"type": "websocket.accept"})
    tracker.app_cancelled()
    metrics.on_close(CloseContext._of(tracker), _scope())
    # The generic server's close at cancellation is unknown: so are its code and cleanliness.
    assert _closes(registry) == {("server", "none", "false", "server_shutdown"): 1.0}


@pytest.mark.parametrize(
    ("server", "disconnect"),
    [
        # granian reports an empty close frame and a drop alike: 1005, no reason key.
        ("granian", {"type": "websocket.disconnect", "code": 1005}),
        # hypercorn reports every client close, clean or not, as 1006.
        ("hypercorn", {"type": "websocket.disconnect", "code": 1006, "reason": ""}),
    ],
)
def test_an_outcome_the_server_cannot_tell_is_labelled_unknown(server: str, disconnect: Message) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry)
    seen: list[CloseContext] = []
    _serve(metrics, "echo", [WS_CONNECT, disconnect], server=server, seen=seen)
    [context] = seen
    assert context.outcome is None
    assert "outcome" in context.unknown
    assert context.server == server
    # No initiator, code or cleanliness either: "none", "none" and "false", never a guess.
    assert _closes(registry) == {("none", "none", "false", "unknown"): 1.0}
    assert _duration_counts(registry) == {("none", "false", "unknown"): 1.0}


_ACTIONS = ("echo", "close", "return", "reject", "deny", "raise", "raise-before-accept", "wait-before-accept")
_SERVERS = (None, *SERVERS)


def _random_disconnect(rng: random.Random) -> Message:
    code: Any = rng.choice(
        [
            rng.randrange(-10, 70_000),
            rng.choice([1000, 1001, 1002, 1005, 1006, 1007, 1011, 1012, 4001]),
            None,
            "not a code",
        ]
    )
    message: Message = {"type": "websocket.disconnect", "code": code}
    roll = rng.random()
    if roll < 0.4:
        message["reason"] = rng.choice(["", "bye", "invalid status code", "x\n" * rng.randrange(5)])
    elif roll < 0.5:
        message["reason"] = None
    return message


def test_the_outcome_label_stays_bounded_whatever_the_codes() -> None:
    rng = random.Random(20240611)
    registry = CollectorRegistry()
    metrics = PrometheusCloseMetrics(registry=registry)
    seen: list[CloseContext] = []
    connections = 1500
    for _ in range(connections):
        action = rng.choice(_ACTIONS)
        inbound = [WS_CONNECT, _random_disconnect(rng), _random_disconnect(rng)]
        _serve(metrics, action, inbound, server=rng.choice(_SERVERS), seen=seen)
    assert len(seen) == connections
    closes = _closes(registry)
    assert sum(closes.values()) == connections
    outcomes = {outcome for _, _, _, outcome in closes}
    assert outcomes <= OUTCOME_LABELS
    assert {outcome for _, _, outcome in _duration_counts(registry)} == outcomes
    # Not vacuous: the random endings reach most outcomes, and the unknown one.
    assert {"client_closed", "app_closed", "rejected", "app_error", "dropped", "unknown"} <= outcomes
    # Every label stays bounded, so the series do: at most 4 x 22 x 2 x 9 of them.
    assert {code for _, code, _, _ in closes} <= CODE_LABELS
    assert {initiator for initiator, _, _, _ in closes} <= {"client", "app", "server", "none"}
    assert {(context.outcome or "unknown") for context in seen} == outcomes


# Real servers.

HOSTILE: list[bytes] = [
    b"bye",
    b"two\nlines",
    b"\r\nINFO forged",
    b"\x1b[2J\x1b[31mansi\x1b[0m",
    b"nul\x00byte",
    b"\x7fdel",
    "c1\u0085\u009b".encode(),
    "bidi\u202e".encode(),
    "é".encode() * 50,
    "😀".encode() * 25,
    b"back\\slash",
]


def _payload(code: int, reason: bytes) -> bytes:
    return code.to_bytes(2, "big") + reason


async def _gather_bounded(coroutines: list[Awaitable[Any]], limit: int) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def one(coroutine: Awaitable[Any]) -> Any:
        async with semaphore:
            return await coroutine

    return list(await asyncio.gather(*(one(c) for c in coroutines)))


@pytest.mark.server
@pytest.mark.timeout(180)
def test_multiprocess_mode_with_two_workers_scraped_over_http(tmp_path: Path) -> None:
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    from tests.support.obsapp import closes_by_labels, raw_close, run_uvicorn, sample_value, scrape, wait_until

    multiproc = tmp_path / "prom"
    with run_uvicorn(tmp_path / "obs", workers=2, multiproc_dir=multiproc) as server:
        base = f"ws://127.0.0.1:{server.port}"

        async def open_ws(path: str) -> tuple[ClientConnection, str]:
            ws = await connect(base + path, proxy=None, open_timeout=10, close_timeout=10, compression=None)
            pid = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(pid, str)
            return ws, pid

        async def scenario() -> tuple[int, set[str], str]:
            # Held connections until both workers serve some: the kernel picks the worker.
            held: list[ClientConnection] = []
            pids: set[str] = set()
            while len(pids) < 2:
                assert len(held) < 300, f"one worker got all {len(held)} connections; {server.describe()}"
                ws, pid = await open_ws("/pid")
                held.append(ws)
                pids.add(pid)
            # Served by either worker, the scrape adds up both workers' files.
            during = await asyncio.to_thread(scrape, server.port)
            for i, ws in enumerate(held):
                await ws.close(*((4001, "bye") if i % 2 else (1000, "")))
            ws, _ = await open_ws("/close?" + urlencode({"code": 4003, "reason": "nope\n"}))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            ws, _ = await open_ws("/raise")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            with pytest.raises(InvalidStatus):
                await connect(base + "/reject", proxy=None, open_timeout=10)
            for i, reason in enumerate(HOSTILE):
                await raw_close(server.port, f"/c/{i}", _payload(3000 + i, reason))
            await raw_close(server.port, "/c/bad-utf8", _payload(4000, b"\xff\xfe"))
            return len(held), pids, during

        count, pids, during = asyncio.run(scenario())
        assert sample_value(during, ACTIVE) == count
        expected = Counter(
            {
                ("client", "1000", "true", "client_closed"): (count + 1) // 2,
                ("client", "4001", "true", "client_closed"): count // 2,
                ("app", "4xxx", "true", "app_closed"): 1,
                ("app", "1006", "false", "app_error"): 1,  # the app raised after accept
                ("app", "1006", "false", "rejected"): 1,  # the rejected handshake
                ("client", "3xxx", "true", "client_closed"): len(HOSTILE),
                ("server", "1007", "false", "server_error"): 1,
            }
        )
        total = sum(expected.values())
        wait_until(
            lambda: sum(closes_by_labels(scrape(server.port)).values()) >= total,
            20,
            lambda: f"{closes_by_labels(scrape(server.port))}; {server.describe()}",
        )
        after = scrape(server.port)
        assert closes_by_labels(after) == expected
        assert sample_value(after, f"{DURATION}_count") == total
        assert sample_value(after, ACTIVE) == 0
        # Multiprocess mode for real: each worker wrote its own files.
        for pid in pids:
            assert (multiproc / f"counter_{pid}.db").is_file()
            assert (multiproc / f"gauge_livesum_{pid}.db").is_file()


def _ten_thousand() -> list[tuple[str, bytes, tuple[str, str, str, str], str | None]]:
    # (path, close payload, expected labels, expected logged reason or None for the server's)
    cases: list[tuple[str, bytes, tuple[str, str, str, str], str | None]] = []
    for i in range(10_000):
        path = f"/c/{i}"
        if i % 100 == 99:
            # Not a valid close: the server fails the connection with a status of its own.
            if i % 200 == 99:
                cases.append(
                    (
                        path,
                        _payload(4000 + i % 1000, f"{i} ".encode() + b"\xc3\x28 bad"),
                        ("server", "1007", "false", "server_error"),
                        None,
                    )
                )
            else:
                code = (1004, 1005, 1006, 1016, 2999, 5000, 65535)[i // 200 % 7]
                cases.append((path, _payload(code, f"{i}".encode()), ("server", "1002", "false", "server_error"), None))
            continue
        code = 3000 + i % 2000
        hostile = HOSTILE[i % len(HOSTILE)]
        raw = f"{i}:".encode() + hostile
        # Cut to the 123 bytes a close frame allows, on a character boundary.
        reason = raw[:123].decode("utf-8", "ignore")
        labels = ("client", code_label(code, {4001}), "true", "client_closed")
        cases.append((path, _payload(code, reason.encode()), labels, reason))
    return cases


@pytest.mark.server
@pytest.mark.timeout(240)
def test_ten_thousand_distinct_codes_and_reasons_stay_bounded_and_clean(tmp_path: Path) -> None:
    from tests.support.obsapp import (
        closes_by_labels,
        raw_close,
        read_json_lines,
        read_text_lines,
        run_uvicorn,
        sample_value,
        scrape,
        wait_until,
    )

    cases = _ten_thousand()
    assert len({payload for _, payload, _, _ in cases}) == 10_000
    with run_uvicorn(tmp_path / "obs") as server:

        async def clients() -> list[Any]:
            return await _gather_bounded([raw_close(server.port, path, payload) for path, payload, _, _ in cases], 50)

        replies = asyncio.run(clients())
        wait_until(
            lambda: (
                sum(closes_by_labels(scrape(server.port)).values()) >= len(cases)
                and sample_value(scrape(server.port), ACTIVE) == 0
            ),
            30,
            server.describe,
        )
        exposition = scrape(server.port)
        texts = read_text_lines(server.directory)
        structured = read_json_lines(server.directory)

    for (_, payload, _, reason), reply in zip(cases, replies, strict=True):
        if reason is not None:
            assert reply == payload  # the server echoed the client's close
    counts = closes_by_labels(exposition)
    assert counts == Counter(labels for _, _, labels, _ in cases)
    assert len(counts) <= 30
    assert {code for _, code, _, _ in counts} <= CODE_LABELS | {"4001"}
    assert {outcome for _, _, _, outcome in counts} <= OUTCOME_LABELS
    assert sample_value(exposition, f"{DURATION}_count") == len(cases)

    assert len(texts) == len(structured) == len(cases)
    for line in texts:
        assert line.isprintable(), line
        assert len(line) <= 300, line
    by_path = {line["ws_close"]["path"]: line["ws_close"] for line in structured}
    for path, payload, labels, reason in cases:
        fields = by_path[path]
        assert (fields["initiator"], code_label(fields["code"], {4001})) == labels[:2]
        assert fields["outcome"] == labels[3]
        assert fields["http_version"] == "1.1"
        assert len(fields["reason"]) <= 123
        assert fields["reason"].isprintable()
        if reason is not None:
            assert fields["code"] == int.from_bytes(payload[:2], "big")
            assert fields["reason"] == sanitize_reason(reason)


# Dead workers in multiprocess mode.

#: A worker of multiprocess mode: the metrics, ``sys.argv[1]`` connections open on the gauge,
#: one close (client, 1000) counted; then "ready", and it waits to be killed.
_WORKER = r"""
import sys, time
from asgi_ws_close import CloseContext
from asgi_ws_close._tracker import CloseTracker
from asgi_ws_close.integrations.prometheus import PrometheusCloseMetrics

metrics = PrometheusCloseMetrics()
metrics.active_connections.inc(int(sys.argv[1]))
tracker = CloseTracker()
tracker.receive({"type": "websocket.connect"})
tracker.send({"type": "websocket.accept"})
tracker.receive({"type": "websocket.disconnect", "code": 1000, "reason": ""})
tracker.app_exited()
metrics.on_close(CloseContext._of(tracker), {})
print("ready", flush=True)
time.sleep(120)
"""

CLIENT_1000 = {"initiator": "client", "code": "1000", "clean": "true", "outcome": "client_closed"}


def _start_worker(directory: Path, open_connections: int) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if key.lower() != "prometheus_multiproc_dir"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(open_connections)],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"the worker did not start: {line!r}")
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the worker by its PID and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def _exited_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _read(collector: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def test_a_killed_workers_gauge_is_dropped_at_collection_and_its_closes_stay(tmp_path: Path) -> None:
    first = _start_worker(tmp_path, 2)
    second = _start_worker(tmp_path, 3)
    try:
        plain = _read(MultiProcessCollector(None, str(tmp_path)))
        live = _read(LiveMultiProcessCollector(None, tmp_path))
        assert plain.get_sample_value(ACTIVE) == live.get_sample_value(ACTIVE) == 5.0
        _kill(first)
        # prometheus-client alone still counts the dead worker's 2 connections.
        assert plain.get_sample_value(ACTIVE) == 5.0
        assert (tmp_path / f"gauge_livesum_{first.pid}.db").exists()
        # The collection drops them; the closes the dead worker recorded stay.
        assert live.get_sample_value(ACTIVE) == 3.0
        assert not (tmp_path / f"gauge_livesum_{first.pid}.db").exists()
        assert (tmp_path / f"counter_{first.pid}.db").exists()
        assert live.get_sample_value(CLOSES, CLIENT_1000) == 2.0
        assert (
            live.get_sample_value(f"{DURATION}_count", {k: CLIENT_1000[k] for k in ("initiator", "clean", "outcome")})
            == 2.0
        )
        assert plain.get_sample_value(ACTIVE) == 3.0  # the file is gone for every reader
    finally:
        _kill(first)
        _kill(second)
    assert live.get_sample_value(ACTIVE) is None  # no worker left: no gauge at all, as prometheus-client does
    assert live.get_sample_value(CLOSES, CLIENT_1000) == 2.0


def test_a_starting_worker_drops_the_dead_workers_gauges(tmp_path: Path) -> None:
    # uvicorn --workers N restarts a killed worker: the new one sweeps before any scrape.
    dead = _start_worker(tmp_path, 4)
    _kill(dead)
    assert (tmp_path / f"gauge_livesum_{dead.pid}.db").exists()
    replacement = _start_worker(tmp_path, 1)
    try:
        assert not (tmp_path / f"gauge_livesum_{dead.pid}.db").exists()
        assert (tmp_path / f"gauge_livesum_{replacement.pid}.db").exists()
        assert (tmp_path / f"counter_{dead.pid}.db").exists()
        plain = _read(MultiProcessCollector(None, str(tmp_path)))
        assert plain.get_sample_value(ACTIVE) == 1.0
        assert plain.get_sample_value(CLOSES, CLIENT_1000) == 2.0
    finally:
        _kill(replacement)


def test_mark_dead_workers_removes_only_live_gauges_of_pids_that_do_not_run(tmp_path: Path) -> None:
    dead, alive = _exited_pid(), os.getpid()
    names = {
        *(f"gauge_{mode}_{pid}.db" for pid in (dead, alive) for mode in ("livesum", "liveall", "livemax")),
        *(f"{kind}_{pid}.db" for pid in (dead, alive) for kind in ("counter", "histogram", "summary")),
        f"gauge_all_{dead}.db",  # not a live mode: prometheus-client keeps it, so does this
        "gauge_livesum_worker-a.db",  # a process_identifier of the app's own, not a PID
        f"gauge_livesum_{dead}.txt",
    }
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert mark_dead_workers(tmp_path) == [dead]
    removed = {f"gauge_{mode}_{dead}.db" for mode in ("livesum", "liveall", "livemax")}
    assert {path.name for path in tmp_path.iterdir()} == names - removed
    assert mark_dead_workers(str(tmp_path)) == []  # nothing left to do


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are read from /proc (Linux)")
def test_a_zombie_worker_is_dead(tmp_path: Path) -> None:
    # Exited, not yet reaped by its parent (this test): kill(pid, 0) still succeeds.
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        stat = Path(f"/proc/{proc.pid}/stat")
        deadline = time.monotonic() + 10
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        os.kill(proc.pid, 0)
        (tmp_path / f"gauge_livesum_{proc.pid}.db").write_bytes(b"")
        assert mark_dead_workers(tmp_path) == [proc.pid]
        assert not list(tmp_path.iterdir())
    finally:
        proc.wait(10)


def test_mark_dead_workers_outside_multiprocess_mode_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"gauge_livesum_{_exited_pid()}.db").write_bytes(b"")
    assert mark_dead_workers() == []
    assert mark_dead_workers(tmp_path / "missing") == []
    assert len(list(tmp_path.iterdir())) == 1


def test_exposition_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    own = CollectorRegistry()
    assert exposition_registry() is REGISTRY
    assert exposition_registry(own) is own
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    registry = exposition_registry(own)
    assert registry is not own and registry is not REGISTRY
    dead = _exited_pid()
    (tmp_path / f"gauge_livesum_{dead}.db").write_bytes(b"")
    # What it serves is what the files say, read through the collector that sweeps dead workers.
    assert generate_latest(registry) == b""
    assert not (tmp_path / f"gauge_livesum_{dead}.db").exists()


def test_the_live_collector_needs_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        LiveMultiProcessCollector(None)
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        LiveMultiProcessCollector(None, tmp_path / "missing")
    registry = CollectorRegistry()
    collector = LiveMultiProcessCollector(registry, tmp_path)
    assert collector.path == str(tmp_path)
    assert list(registry.collect()) == []


# The liveness check behind mark_dead_workers, where the OS answers unusually.


def test_a_pid_below_one_is_no_running_process() -> None:
    from asgi_ws_close.integrations.prometheus import _running

    assert not _running(0) and not _running(-1)


def test_a_process_of_another_user_is_running(monkeypatch: pytest.MonkeyPatch) -> None:
    from asgi_ws_close.integrations import prometheus

    def kill(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(prometheus.os, "kill", kill)
    assert prometheus._running(4242)


@pytest.mark.parametrize(
    ("error", "proc_exists", "running"),
    [
        pytest.param(FileNotFoundError, True, False, id="gone-since-the-kill"),
        pytest.param(FileNotFoundError, False, True, id="no-proc-kill-is-all-there-is"),
        pytest.param(PermissionError, True, True, id="unreadable-stat"),
    ],
)
def test_when_proc_cannot_tell(
    monkeypatch: pytest.MonkeyPatch, error: type[OSError], proc_exists: bool, running: bool
) -> None:
    from asgi_ws_close.integrations import prometheus

    monkeypatch.setattr(prometheus.os, "kill", lambda pid, sig: None)

    def read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        raise error(2, "no stat")

    monkeypatch.setattr(prometheus.Path, "read_text", read_text)
    monkeypatch.setattr(prometheus.Path, "exists", lambda self: proc_exists)
    assert prometheus._running(4242) is running


def test_a_gauge_file_another_worker_removed_first_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from asgi_ws_close.integrations import prometheus

    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"")
    monkeypatch.setattr(prometheus, "_running", lambda pid: False)

    def remove(path: str) -> None:
        raise FileNotFoundError(2, "gone", path)

    monkeypatch.setattr(prometheus.os, "remove", remove)
    assert prometheus.mark_dead_workers(tmp_path) == [4242]
