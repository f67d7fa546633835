"""The Autobahn TestSuite run: uvicorn subprocesses, wstest fuzzingclient, and reading what both wrote.

Nothing here asserts: the functions return lists of problems (empty when all is well) and
tables, so that the test can report every problem of a run at once.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.autobahn.echo import RECORDS_ENV
from tests.support.process import ServerProcess

__all__ = [
    "CASES",
    "IMPLS",
    "VARIANTS",
    "CaseResult",
    "Connection",
    "Server",
    "agent_name",
    "case_key",
    "by_case",
    "check_connections",
    "compare_disconnects",
    "compare_variants",
    "expected_on_close_code",
    "fuzzingclient_spec",
    "initiator_table",
    "load_results",
    "notable_cases",
    "read_connections",
    "section_of",
    "summary_table",
]

#: uvicorn's WebSocket implementations under test (legacy ``websockets`` is deprecated in uvicorn).
IMPLS: tuple[str, ...] = ("wsproto", "websockets-sansio")
#: The apps of tests/autobahn/echo.py: bare, middleware at defaults, middleware with every policy.
VARIANTS: tuple[str, ...] = ("plain", "default", "policies")
#: Sections 1-7, 9.1, 9.2 and 10; nothing excluded. 9.3-9.8 (many-fragment and large-frame
#: performance cases) and 12/13 (permessage-deflate) are left out for time only.
CASES: tuple[str, ...] = ("1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.1.*", "9.2.*", "10.*")

#: OK and NON-STRICT count as equal: whether the echo of a valid message goes out before the
#: server fails the connection on the bad frame that follows is a race (3.4, 4.1.5, 4.2.5).
_EQUIVALENT = {"NON-STRICT": "OK"}

# What uvicorn logs when the app raised or returned wrongly, and what the middleware logs when a
# hook raised. (uvicorn's websockets-sansio also logs "Invalid UTF-8 sequence received from
# client" with a traceback of its own in 6.x: that is the server's, the same for every variant.)
_APP_ERROR = re.compile(
    r"Exception in ASGI application|ASGI callable returned without|ASGI callable should return None|"
    r"asgi_ws_close: on_close hook"
)


def agent_name(impl: str, variant: str) -> str:
    """The wstest agent of one server: ``<impl>-<variant>``."""
    return f"{impl}-{variant}"


def case_key(case_id: str) -> tuple[int, ...]:
    """Sort key of a case id: "7.13.1" -> (7, 13, 1), the order in which wstest runs cases."""
    return tuple(int(part) for part in case_id.split("."))


def section_of(case_id: str) -> str:
    """The row of the summary table: the top-level section, but 9.1 and 9.2 apart."""
    parts = case_id.split(".")
    return ".".join(parts[:2]) if parts[0] == "9" else parts[0]


class Server(ServerProcess):
    """``python -m uvicorn tests.autobahn.echo:<variant> --ws <impl>`` on 127.0.0.1, a free port.

    Started by the constructor, ready after :meth:`wait_ready`, stopped by :meth:`stop` (the
    tiers' runner, :mod:`tests.support.process`): SIGTERM is uvicorn's graceful shutdown, which
    waits for the apps, and so for their ``on_close`` hooks.
    """

    def __init__(self, impl: str, variant: str, records: Path) -> None:
        self.impl = impl
        self.variant = variant
        self.records = records
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            f"tests.autobahn.echo:{variant}",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ws",
            impl,
            "--no-access-log",
        ]
        super().__init__(command, name=f"uvicorn {self.agent}", env={RECORDS_ENV: str(records)})

    @property
    def agent(self) -> str:
        return agent_name(self.impl, self.variant)

    def app_errors(self) -> list[str]:
        """Lines of the server's log that tell of an app exception or a failed hook."""
        return [line.rstrip() for line in self.log().splitlines() if _APP_ERROR.search(line)]


def fuzzingclient_spec(outdir: Path, servers: Sequence[Server]) -> dict[str, Any]:
    """A wstest ``-m fuzzingclient`` spec: all :data:`CASES` against each server, in turn."""
    return {
        "outdir": str(outdir),
        "servers": [{"agent": server.agent, "url": server.url("")} for server in servers],
        "cases": list(CASES),
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }


@dataclass(frozen=True)
class CaseResult:
    """One case of one agent, from wstest's index.json and the case's own report."""

    case: str
    behavior: str
    behavior_close: str
    remote_close_code: int | None
    started: str
    #: wstest (the client) started the closing handshake.
    closed_by_me: bool

    @property
    def grade(self) -> tuple[str, str]:
        """(behavior, behaviorClose), with NON-STRICT counted as OK."""
        return (
            _EQUIVALENT.get(self.behavior, self.behavior),
            _EQUIVALENT.get(self.behavior_close, self.behavior_close),
        )


def load_results(outdir: Path) -> dict[str, dict[str, CaseResult]]:
    """agent -> case id -> result, from ``outdir/index.json`` and the per-case reports."""
    index: dict[str, dict[str, dict[str, Any]]] = json.loads((outdir / "index.json").read_text("utf-8"))
    results: dict[str, dict[str, CaseResult]] = {}
    for agent, cases in index.items():
        results[agent] = {}
        for case, entry in cases.items():
            report = json.loads((outdir / entry["reportfile"]).read_text("utf-8"))
            results[agent][case] = CaseResult(
                case=case,
                behavior=entry["behavior"],
                behavior_close=entry["behaviorClose"],
                remote_close_code=entry.get("remoteCloseCode"),
                started=report["started"],
                closed_by_me=bool(report["closedByMe"]),
            )
    return results


@dataclass
class Connection:
    """What the echo app and the on_close hook wrote about one connection."""

    conn: int
    opened: int = 0
    disconnects: list[dict[str, Any]] = field(default_factory=list)
    on_closes: list[dict[str, Any]] = field(default_factory=list)
    send_failures: int = 0


def read_connections(records: Path) -> dict[int, Connection]:
    """conn number -> what was recorded for it (the server must have stopped)."""
    connections: dict[int, Connection] = {}
    if not records.exists():
        return connections
    for line in records.read_text("utf-8").splitlines():
        record = json.loads(line)
        conn = connections.setdefault(record["conn"], Connection(record["conn"]))
        event = record["event"]
        if event == "open":
            conn.opened += 1
        elif event == "disconnect":
            conn.disconnects.append(record["message"])
        elif event == "on_close":
            conn.on_closes.append(record["context"])
        elif event == "send_failed":
            conn.send_failures += 1
    return connections


def expected_on_close_code(disconnect: Mapping[str, Any]) -> int:
    """The ``CloseContext.code`` that the middleware must report for an echo app's disconnect.

    The echo app never closes, so the connection always ends with the server's
    ``websocket.disconnect`` and the context's code is the close status in it, except where
    the middleware normalises a lost transport, which has no close status, to 1006:

    * 1006 (never sent on the wire: servers use it for "no close frame") stays 1006;
    * 1005 *without* a ``reason`` key is how uvicorn's wsproto and websockets-sansio report a
      lost transport (``connection_lost``), so it becomes 1006; a 1005 *with* ``reason=""``
      is a real empty close frame from the peer (7.3.1) and stays 1005. A missing ``code``
      is ASGI's default, 1005, and follows the same rule;
    * any other code is the peer's close, or the server's own (1002/1007/1009 on a protocol
      error, 1012 at shutdown), and the context reports it unchanged.
    """
    code = disconnect.get("code")
    code = 1005 if code is None else int(code)
    if code == 1006:
        return 1006
    if code == 1005 and "reason" not in disconnect:
        return 1006
    return code


def check_connections(
    agent: str, wrapped: bool, results: Mapping[str, CaseResult], connections: Mapping[int, Connection]
) -> list[str]:
    """Problems with what one server's app recorded: one connection per case, one disconnect
    each, and, when wrapped, exactly one on_close whose code matches the disconnect."""
    problems: list[str] = []
    order = sorted(results, key=case_key)
    started = [results[case].started for case in order]
    if started != sorted(started):
        problems.append(f"{agent}: wstest did not run the cases in case-id order: connections cannot be mapped")
    if sorted(connections) != list(range(len(order))):
        problems.append(
            f"{agent}: {len(connections)} connections recorded for {len(order)} cases "
            f"(conn numbers {sorted(connections)[:5]}...): expected one connection per case"
        )
        return problems
    for conn_number, case in enumerate(order):
        conn = connections[conn_number]
        where = f"{agent} case {case} (conn {conn_number})"
        if conn.opened != 1:
            problems.append(f"{where}: opened {conn.opened} times")
        if len(conn.disconnects) != 1:
            problems.append(f"{where}: the app received {len(conn.disconnects)} disconnects, expected 1")
            continue
        disconnect = conn.disconnects[0]
        if not wrapped:
            if conn.on_closes:
                problems.append(f"{where}: on_close records without the middleware: {conn.on_closes}")
            continue
        if len(conn.on_closes) != 1:
            problems.append(f"{where}: {len(conn.on_closes)} on_close calls, expected exactly 1")
            continue
        context = conn.on_closes[0]
        expected = expected_on_close_code(disconnect)
        if context["code"] != expected:
            problems.append(
                f"{where}: on_close code {context['code']} but the disconnect {disconnect} means {expected}; "
                f"context {context}"
            )
        if context["error"] is not None:
            problems.append(f"{where}: the context records an app error: {context['error']}")
    return problems


def compare_variants(impl: str, results: Mapping[str, Mapping[str, CaseResult]]) -> tuple[list[str], list[str]]:
    """Compare the three variants of one implementation case by case.

    Returns (problems, notes): a problem is a case whose grade (behavior, behaviorClose, with
    NON-STRICT as OK) differs between variants, or is missing from one; a note is a raw
    OK/NON-STRICT difference, which is allowed.
    """
    problems: list[str] = []
    notes: list[str] = []
    agents = [agent_name(impl, variant) for variant in VARIANTS]
    case_ids = sorted(set().union(*(results.get(agent, {}) for agent in agents)), key=case_key)
    for case in case_ids:
        found = {agent: results.get(agent, {}).get(case) for agent in agents}
        missing = [agent for agent, result in found.items() if result is None]
        if missing:
            problems.append(f"{impl} case {case}: no result for {', '.join(missing)}")
            continue
        present = {agent: result for agent, result in found.items() if result is not None}
        raw = {agent: (r.behavior, r.behavior_close) for agent, r in present.items()}
        if len({r.grade for r in present.values()}) > 1:
            problems.append(f"{impl} case {case}: the variants differ: {_format_raw(raw)}")
        elif len(set(raw.values())) > 1:
            notes.append(f"{impl} case {case}: OK/NON-STRICT flip (allowed): {_format_raw(raw)}")
    return problems, notes


def compare_disconnects(
    impl: str,
    results: Mapping[str, Mapping[str, CaseResult]],
    connections: Mapping[str, Mapping[int, Connection]],
) -> list[str]:
    """Notes (informational, not checked): cases whose ``websocket.disconnect`` (code and
    reason, as the app received it) differs between the three variants of one implementation.

    It never did in the runs made when this was written; it is not a check because the spec
    leaves room for timing (a server may report a lost transport instead of a close).
    """
    agents = [agent_name(impl, variant) for variant in VARIANTS]
    mapped = {agent: by_case(results.get(agent, {}), connections.get(agent, {})) for agent in agents}
    notes: list[str] = []
    for case in sorted(mapped[agents[0]], key=case_key):
        seen: dict[str, str] = {}
        for agent in agents:
            conn = mapped[agent].get(case)
            seen[agent] = repr(conn.disconnects[0]) if conn is not None and conn.disconnects else "none"
        if len(set(seen.values())) > 1:
            shown = "; ".join(f"{agent}={disconnect}" for agent, disconnect in seen.items())
            notes.append(f"{impl} case {case}: the disconnect differs between variants: {shown}")
    return notes


def _format_raw(raw: Mapping[str, tuple[str, str]]) -> str:
    return "; ".join(f"{agent}={behavior}/{close}" for agent, (behavior, close) in raw.items())


_COLUMNS = ("OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED")


def summary_table(results: Mapping[str, Mapping[str, CaseResult]], agents: Iterable[str]) -> str:
    """Per agent and section: the count of each ``behavior``, and the non-OK ``behaviorClose``."""
    header = ("agent", "section", "cases", *_COLUMNS, "other", "behaviorClose not OK")
    rows: list[tuple[str, ...]] = [header]
    for agent in agents:
        by_section: dict[str, list[CaseResult]] = {}
        for case in sorted(results.get(agent, {}), key=case_key):
            by_section.setdefault(section_of(case), []).append(results[agent][case])
        for section, cases in by_section.items():
            behavior = Counter(r.behavior for r in cases)
            other = sum(n for name, n in behavior.items() if name not in _COLUMNS)
            close = Counter(r.behavior_close for r in cases if r.behavior_close != "OK")
            rows.append(
                (
                    agent,
                    section,
                    str(len(cases)),
                    *(str(behavior.get(name, 0)) for name in _COLUMNS),
                    str(other),
                    ", ".join(f"{name} {n}" for name, n in sorted(close.items())) or "-",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def by_case(results: Mapping[str, CaseResult], connections: Mapping[int, Connection]) -> dict[str, Connection]:
    """case id -> its connection: the n-th case in case-id order is connection n."""
    order = sorted(results, key=case_key)
    return {case: connections[n] for n, case in enumerate(order) if n in connections}


def notable_cases(
    results: Mapping[str, Mapping[str, CaseResult]],
    connections: Mapping[str, Mapping[int, Connection]],
    agents: Sequence[str],
) -> str:
    """One line per agent for every case that is not OK/OK somewhere: grades, the app's
    disconnect, and the on_close code."""
    per_agent = {agent: by_case(results.get(agent, {}), connections.get(agent, {})) for agent in agents}
    case_ids = sorted(set().union(*(results.get(agent, {}) for agent in agents)), key=case_key)
    lines: list[str] = []
    for case in case_ids:
        found = [results.get(agent, {}).get(case) for agent in agents]
        if all(r is not None and (r.behavior, r.behavior_close) == ("OK", "OK") for r in found):
            continue
        lines.append(f"case {case}:")
        for agent, result in zip(agents, found, strict=True):
            grade = "missing" if result is None else f"{result.behavior}/{result.behavior_close}"
            conn = per_agent[agent].get(case)
            seen = ""
            if conn is not None:
                disconnect = conn.disconnects[0] if conn.disconnects else None
                if disconnect is not None:
                    shown = {k: v for k, v in disconnect.items() if k != "type"}
                    seen = f"  disconnect {shown}"
                if conn.on_closes:
                    seen += f"  on_close code {conn.on_closes[0]['code']}"
                if conn.send_failures:
                    seen += f"  ({conn.send_failures} echo sends failed)"
            remote = "" if result is None else f"  wstest got {result.remote_close_code}"
            lines.append(f"  {agent:28} {grade:28}{remote}{seen}")
    return "\n".join(lines)


def initiator_table(
    results: Mapping[str, Mapping[str, CaseResult]],
    connections: Mapping[str, Mapping[int, Connection]],
    agents: Sequence[str],
) -> str:
    """For information (not checked): who wstest says closed first, against the ``initiator``
    and ``clean`` that on_close reported, with up to 4 example cases per row."""
    lines: list[str] = []
    for agent in agents:
        seen: dict[tuple[str, str, str], list[str]] = {}
        for case, conn in by_case(results.get(agent, {}), connections.get(agent, {})).items():
            if not conn.on_closes:
                continue
            context = conn.on_closes[0]
            first = "client closed first" if results[agent][case].closed_by_me else "server closed first"
            key = (first, f"initiator={context['initiator']}", f"clean={context['clean']}")
            seen.setdefault(key, []).append(case)
        for key, cases in sorted(seen.items()):
            examples = ", ".join(cases[:4]) + (", ..." if len(cases) > 4 else "")
            lines.append(f"  {agent:28} {' / '.join(key):58} {len(cases):4}  ({examples})")
    return "\n".join(lines)
