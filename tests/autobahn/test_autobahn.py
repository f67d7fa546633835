"""Autobahn TestSuite conformance: the middleware changes nothing a WebSocket client can see.

wstest's fuzzingclient runs sections 1-7, 9.1, 9.2 and 10 against uvicorn (wsproto and
websockets-sansio), each serving the echo app of tests/autobahn/echo.py three ways: bare, in
the middleware at its defaults, and in the middleware with every policy on. For each
implementation the per-case grades (``behavior``, ``behaviorClose``; NON-STRICT counted as OK)
must be the same for the three, and in every case of the wrapped apps ``on_close`` must run
exactly once with the code of the server's ``websocket.disconnect``.

wstest needs Python 2.7: ``.ci/install-autobahn DIR`` installs it and prints its path, which
goes in ``AUTOBAHN_WSTEST``. Without it the test skips, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.autobahn.harness import (
    IMPLS,
    VARIANTS,
    CaseResult,
    Connection,
    Server,
    agent_name,
    check_connections,
    compare_disconnects,
    compare_variants,
    fuzzingclient_spec,
    initiator_table,
    load_results,
    notable_cases,
    read_connections,
    section_of,
    summary_table,
)

pytestmark = [pytest.mark.server, pytest.mark.autobahn]

WSTEST_ENV = "AUTOBAHN_WSTEST"
#: wstest's own run takes about 40 s here (both implementations at once, 2 cores); the bounds
#: only keep a hung run from holding CI.
WSTEST_TIMEOUT = 300.0
TEST_TIMEOUT = 420
STOP_TIMEOUT = 10.0

#: What wstest 25.10.1 runs for the requested sections, per agent.
EXPECTED_SECTIONS = {"1": 16, "2": 11, "3": 7, "4": 10, "5": 20, "6": 145, "7": 37, "9.1": 6, "9.2": 6, "10": 1}


def _wstest() -> str:
    path = os.environ.get(WSTEST_ENV)
    if not path:
        reason = (
            f"{WSTEST_ENV} is not set: run `.ci/install-autobahn DIR` (Python 2.7 from pyenv, gcc) "
            f"and set {WSTEST_ENV} to the wstest path it prints"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; the Autobahn run is required in CI")
        pytest.skip(reason)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{WSTEST_ENV}={path!r} is not an executable file")
    return path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # Only for a wstest still running when the test gives up: stop it by its own PID.
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])


@pytest.mark.timeout(TEST_TIMEOUT)
def test_fuzzingclient_same_with_and_without_middleware(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wstest = _wstest()
    began = time.monotonic()
    servers: dict[str, Server] = {}
    exit_codes: dict[str, int] = {}
    with ExitStack() as stack:
        for impl in IMPLS:
            for variant in VARIANTS:
                server = Server(impl, variant, tmp_path / f"records-{agent_name(impl, variant)}.jsonl")
                stack.callback(server.stop)
                servers[server.agent] = server
        for server in servers.values():
            server.wait_ready()

        # One wstest per implementation (its three servers in turn), the two at once.
        runs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        for impl in IMPLS:
            spec = tmp_path / f"spec-{impl}.json"
            outdir = tmp_path / f"reports-{impl}"
            spec.write_text(json.dumps(fuzzingclient_spec(outdir, [servers[agent_name(impl, v)] for v in VARIANTS])))
            log_path = tmp_path / f"wstest-{impl}.log"
            log = stack.enter_context(log_path.open("wb"))
            proc = subprocess.Popen(
                [wstest, "-m", "fuzzingclient", "-s", str(spec)],
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_stop, proc)
            runs.append((impl, proc, log_path))
        deadline = began + WSTEST_TIMEOUT
        for impl, proc, log_path in runs:
            try:
                returncode = proc.wait(max(deadline - time.monotonic(), 1.0))
            except subprocess.TimeoutExpired:
                pytest.fail(f"wstest ({impl}) still running after {WSTEST_TIMEOUT:.0f} s:\n{_tail(log_path)}")
            if returncode != 0:
                pytest.fail(f"wstest ({impl}) exited with {returncode}:\n{_tail(log_path)}")
        wstest_seconds = time.monotonic() - began
        # Stop the servers now: uvicorn's graceful shutdown waits for the apps, so every
        # record (the on_close hooks run after the app returns) is written once they exit.
        for agent, server in servers.items():
            exit_codes[agent] = server.stop()
            (tmp_path / f"uvicorn-{agent}.log").write_text(server.log(), "utf-8")

    agents = list(servers)
    results: dict[str, dict[str, CaseResult]] = {}
    for impl in IMPLS:
        results.update(load_results(tmp_path / f"reports-{impl}"))
    connections: dict[str, dict[int, Connection]] = {
        agent: read_connections(server.records) for agent, server in servers.items()
    }

    problems: list[str] = []
    notes: list[str] = []
    for agent, server in servers.items():
        # uvicorn ends a graceful shutdown on SIGTERM by re-raising the signal.
        if exit_codes[agent] not in (0, -signal.SIGTERM):
            problems.append(f"{agent}: uvicorn exited with {exit_codes[agent]}:\n{server.log()[-3000:]}")
        problems.extend(f"{agent}: server log: {line}" for line in server.app_errors())
        sections: dict[str, int] = {}
        for case in results.get(agent, {}):
            sections[section_of(case)] = sections.get(section_of(case), 0) + 1
        if sections != EXPECTED_SECTIONS:
            problems.append(f"{agent}: cases per section {sections}, expected {EXPECTED_SECTIONS}")
        problems.extend(check_connections(agent, server.variant != "plain", results.get(agent, {}), connections[agent]))
    for impl in IMPLS:
        impl_problems, impl_notes = compare_variants(impl, results)
        problems.extend(impl_problems)
        notes.extend(impl_notes)
        notes.extend(compare_disconnects(impl, results, connections))

    report = "\n\n".join(
        part
        for part in (
            f"Autobahn fuzzingclient: {len(agents)} servers; start + wstest {wstest_seconds:.1f} s, "
            f"test {time.monotonic() - began:.1f} s",
            summary_table(results, agents),
            "Cases not OK/OK somewhere:\n" + notable_cases(results, connections, agents),
            "wstest's view of who closed first vs on_close (informational):\n"
            + initiator_table(results, connections, agents),
            "\n".join(notes),
        )
        if part
    )
    with capsys.disabled():
        print(f"\n{report}\n")
    assert not problems, "\n".join(problems) + "\n\n" + report
