"""A real Prometheus scrapes the Prometheus recipe of docs/observability.md under 4-worker uvicorn and gunicorn.

Each deployment test (`server` marker) runs `tests.support.promapp` (the docs' recipe) with
the docs' command line (`uvicorn --workers 4`; `gunicorn -k uvicorn_worker.UvicornWorker
--workers 4`) in multiprocess mode, starts Debian's `prometheus` (a temporary config and
TSDB, 127.0.0.1, a 1 s scrape interval; `tests.support.prometheus`), and checks through
`/api/v1/query` what Prometheus stored:

1. A known mix, 130 connections: 30 client closes with 1000, 30 with 4001, 30 app closes with
   4002, 20 TCP drops (no close frame), 20 rejected handshakes; then connections held open
   until two workers or more hold some and one of them has recorded closes. Prometheus must
   show every count by (outcome, code, initiator, clean) exactly, and the gauge equal to the
   connections held.
2. SIGKILL of that worker, with its held connections open. Within 10 s of the kill, the gauge
   must equal the connections really open (those held on the other workers), and the counts
   must still be exactly those of step 1: the dead worker's closes stay counted. Its
   live-gauge file is gone, its counter file is not.
3. Once the server has replaced the worker: 50 more connections of the same mix, then every
   held connection is closed by the client (1000). Prometheus must show the counts of the
   whole mix exactly, by the four labels together and by each one alone, the histogram's
   counts equal to them, and the gauge at 0.

The connections open on the killed worker end without a record, by design: the process that
would have observed their end is gone, so no close is counted and no duration observed for
them (the client saw a TCP close without a close frame); they only leave the gauge, at the
first scrape after the death. The expected counts leave them out, so a record invented for
them, or a count lost with the worker, fails the test.

One process with no configuration (`uvicorn tests.support.promapp:app`, no `--workers`, no
`PROMETHEUS_MULTIPROC_DIR`) is scraped the same way: the mix twice, held connections, every
count and the gauge exact.

Then every PromQL `expr` of `examples/grafana/asgi-ws-close.json` is evaluated against
that Prometheus (`$__rate_interval` as `1m`, `$job` as `.+`): each must return data,
rates non-negative, and the same expression with each `rate(...[1m])` replaced by the
counter itself must give the numbers of the mix exactly.

Skipped, with the reason, when the `prometheus` binary (or gunicorn, uvicorn-worker) is
missing, unless `CI` is set: then it fails.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.prometheus import (
    PROMAPP,
    Deployment,
    Prometheus,
    ServerKind,
    deployment_command,
    http_get,
    promapp_constant,
    prometheus_binary,
    run_deployment,
    run_prometheus,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_CLOSE_CODE: int = promapp_constant("APP_CLOSE_CODE")
DASHBOARD = REPO_ROOT / "examples" / "grafana" / "asgi-ws-close.json"

CLOSES = "websocket_server_closes_total"
DURATION = "websocket_server_connection_duration_seconds"
ACTIVE = "websocket_server_active_connections"
LABELS = ("outcome", "code", "initiator", "clean")

WORKERS = 4
CLIENT_TIMEOUT = 10.0
#: The bound of the issue: the gauge is right within this long after a worker's death.
GAUGE_AFTER_DEATH = 10.0
SETTLE_TIMEOUT = 20.0

#: Each kind of ending the clients drive, and the labels (outcome, code, initiator, clean)
#: its close must be counted with.
ENDINGS: dict[str, tuple[str, str, str, str]] = {
    "client_1000": ("client_closed", "1000", "client", "true"),
    "client_4001": ("client_closed", "4001", "client", "true"),
    "app_4002": ("app_closed", str(APP_CLOSE_CODE), "app", "true"),
    "dropped": ("dropped", "1006", "none", "false"),
    "rejected": ("rejected", "1006", "app", "false"),
}
PHASE_1 = {"client_1000": 30, "client_4001": 30, "app_4002": 30, "dropped": 20, "rejected": 20}
PHASE_2 = dict.fromkeys(ENDINGS, 10)
#: Connections held open in step 1: at least this many, at most the bound.
HELD_MIN = 8
HELD_MAX = 80
CONCURRENCY = 16


def _require(what: str, missing: bool) -> None:
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing and CI is set: this tier must run in CI")
    pytest.skip(f"needs {what}")


def _prometheus() -> str:
    binary = prometheus_binary()
    _require("Debian's prometheus binary (apt-get install prometheus; .ci/install-prometheus)", binary is None)
    assert binary is not None
    return binary


def _server_packages(kind: ServerKind) -> None:
    if kind == "gunicorn":
        missing = [name for name in ("gunicorn", "uvicorn_worker") if importlib.util.find_spec(name) is None]
        _require(f"{' and '.join(missing)} (pip install gunicorn uvicorn-worker)", bool(missing))


# The clients.


async def _open(port: int, path: str) -> tuple[Any, int]:
    """Open a WebSocket on `path`; return it and the PID of the worker that serves it."""
    from websockets.asyncio.client import connect

    ws = await connect(
        f"ws://127.0.0.1:{port}{path}",
        proxy=None,
        open_timeout=CLIENT_TIMEOUT,
        close_timeout=CLIENT_TIMEOUT,
        ping_interval=None,
        compression=None,
    )
    pid = await asyncio.wait_for(ws.recv(), CLIENT_TIMEOUT)
    return ws, int(pid)


async def _end_one(port: int, ending: str) -> int | None:
    """Drive one connection to `ending`; return the PID that served it (None if rejected)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    if ending == "rejected":
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{port}/ws/reject", proxy=None, open_timeout=CLIENT_TIMEOUT)
        assert refused.value.response.status_code == 403
        return None
    if ending == "app_4002":
        ws, pid = await _open(port, "/ws/close")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), CLIENT_TIMEOUT)
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == APP_CLOSE_CODE
        return pid
    ws, pid = await _open(port, "/ws/hold")
    if ending == "dropped":
        ws.transport.abort()  # the TCP connection ends, no close frame sent
        await asyncio.wait_for(ws.wait_closed(), CLIENT_TIMEOUT)
        assert ws.protocol.close_sent is None
    else:
        await asyncio.wait_for(ws.close(1000 if ending == "client_1000" else 4001), CLIENT_TIMEOUT)
        assert ws.protocol.close_rcvd is not None  # the server answered: a clean close
    return pid


async def _drive(port: int, mix: Mapping[str, int], seed: int) -> Counter[int]:
    """Drive the `mix` ({ending: count}) in a seeded order; return the closes per worker PID."""
    endings = [ending for ending, count in mix.items() for _ in range(count)]
    random.Random(seed).shuffle(endings)
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(ending: str) -> int | None:
        async with semaphore:
            return await _end_one(port, ending)

    pids = await asyncio.gather(*(one(ending) for ending in endings))
    return Counter(pid for pid in pids if pid is not None)


def _expected(*mixes: Mapping[str, int]) -> dict[tuple[str, ...], float]:
    counts: Counter[tuple[str, ...]] = Counter()
    for mix in mixes:
        for ending, count in mix.items():
            counts[ENDINGS[ending]] += count
    return {labels: float(count) for labels, count in counts.items() if count}


def _by(expected: Mapping[tuple[str, ...], float], labels: Sequence[str]) -> dict[tuple[str, ...], float]:
    """Sum `expected` (keyed by `LABELS`) by some of its labels."""
    out: Counter[tuple[str, ...]] = Counter()
    for key, value in expected.items():
        named = dict(zip(LABELS, key, strict=True))
        out[tuple(named[label] for label in labels)] += value
    return dict(out)


async def _until(prometheus: Prometheus, what: str, check: Any, timeout: float) -> Any:
    """Poll `check()` (queries, in a thread) until it returns (observed, True); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        observed, ok = await asyncio.to_thread(check)
        if ok:
            return observed
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s; last observed: {observed!r}")
        await asyncio.sleep(0.1)


def _counts(prometheus: Prometheus) -> dict[tuple[str, ...], float]:
    return prometheus.vector(f"sum by ({', '.join(LABELS)}) ({CLOSES})", LABELS)


def _gauge(prometheus: Prometheus) -> float | None:
    return prometheus.scalar(f"sum({ACTIVE})")


# The deployment tests.


@pytest.mark.server
@pytest.mark.timeout(150)
@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_a_dead_worker_leaves_the_gauge_and_keeps_its_closes(kind: ServerKind, tmp_path: Path) -> None:
    _server_packages(kind)
    _scraped(kind, tmp_path, WORKERS, _scenario)


def _scraped(
    kind: ServerKind,
    tmp_path: Path,
    workers: int | None,
    scenario: Callable[[Deployment, Prometheus], Coroutine[Any, Any, None]],
) -> None:
    # The deployment, a Prometheus scraping it, and the scenario; a failure says what both logged.
    binary = _prometheus()
    with (
        run_deployment(kind, tmp_path / kind, workers=workers) as deployment,
        run_prometheus(binary, tmp_path / "prometheus", {kind: deployment.port}) as prometheus,
    ):
        try:
            asyncio.run(scenario(deployment, prometheus))
        except BaseException as exc:
            exc.add_note(f"{deployment.describe()}\n{prometheus.describe()}")
            raise


async def _metrics_answers(port: int) -> None:
    # /metrics itself answers, no redirect.
    status, headers, body = await asyncio.to_thread(http_get, port, "/metrics")
    assert status == 200 and "location" not in headers, (status, headers)
    assert headers["content-type"].startswith("text/plain;"), headers
    assert f"# TYPE {ACTIVE} gauge" in body.decode()


async def _scenario(deployment: Deployment, prometheus: Prometheus) -> None:
    port = deployment.port
    await _metrics_answers(port)

    # 1. The mix, then held connections.
    recorded = await _drive(port, PHASE_1, seed=1)
    held: dict[int, list[Any]] = {}
    while not (sum(map(len, held.values())) >= HELD_MIN and len(held) >= 2 and any(pid in recorded for pid in held)):
        assert sum(map(len, held.values())) < HELD_MAX, (
            f"{HELD_MAX} connections held, on workers {sorted(held)}; closes recorded on {dict(recorded)}"
        )
        ws, pid = await _open(port, "/ws/hold")
        held.setdefault(pid, []).append(ws)
    total_held = sum(map(len, held.values()))
    phase_1 = _expected(PHASE_1)
    await _until(
        prometheus,
        "the mix's counts and the held connections",
        lambda: ((c := _counts(prometheus), g := _gauge(prometheus)), (c, g) == (phase_1, total_held)),
        SETTLE_TIMEOUT,
    )

    # 2. SIGKILL the worker that holds connections and recorded the most closes.
    victim = max((pid for pid in held if pid in recorded), key=lambda pid: (recorded[pid], len(held[pid])))
    assert victim in deployment.live_workers(), (victim, deployment.live_workers())
    survivors_held = total_held - len(held[victim])
    assert recorded[victim] >= 1 and len(held[victim]) >= 1 and survivors_held >= 1
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    for ws in held.pop(victim):
        await asyncio.wait_for(ws.wait_closed(), CLIENT_TIMEOUT)
        assert ws.protocol.close_rcvd is None  # the worker died: no close frame
    await _until(
        prometheus,
        f"the gauge at the {survivors_held} connections open after the kill of worker {victim}",
        lambda: (g := _gauge(prometheus), g == survivors_held),
        GAUGE_AFTER_DEATH - (time.monotonic() - killed_at),
    )
    assert time.monotonic() - killed_at <= GAUGE_AFTER_DEATH
    await _until(
        prometheus,
        "the closes recorded before the death, all still counted",
        lambda: (c := _counts(prometheus), c == phase_1),
        SETTLE_TIMEOUT,
    )
    assert deployment.multiproc_dir is not None
    files = {path.name for path in deployment.multiproc_dir.iterdir()}
    assert f"gauge_livesum_{victim}.db" not in files, sorted(files)
    assert f"counter_{victim}.db" in files and f"histogram_{victim}.db" in files, sorted(files)

    # 3. The server replaces the worker; more of the mix; the clients close what they hold.
    await asyncio.to_thread(deployment.wait_workers, WORKERS)
    assert victim not in deployment.live_workers()
    await _drive(port, PHASE_2, seed=2)
    for connections in held.values():
        for ws in connections:
            await asyncio.wait_for(ws.close(1000), CLIENT_TIMEOUT)
    final = _expected(PHASE_1, PHASE_2, {"client_1000": survivors_held})
    await _ends_with(prometheus, final)


@pytest.mark.server
@pytest.mark.timeout(120)
def test_one_process_with_no_configuration(tmp_path: Path) -> None:
    # `uvicorn myapp:app`, no --workers, no PROMETHEUS_MULTIPROC_DIR: the recipe as it is.
    _scraped("uvicorn", tmp_path, None, _one_process)


async def _one_process(deployment: Deployment, prometheus: Prometheus) -> None:
    port = deployment.port
    await _metrics_answers(port)
    # Twice the mix, with a scrape between: rate() sees every series increase, as on a live
    # server (a series' first sample is its start, not an increase).
    recorded = await _drive(port, PHASE_2, seed=3)
    assert set(recorded) == {deployment.server.pid}, recorded
    await _until(
        prometheus,
        "the mix's counts",
        lambda: ((c := _counts(prometheus), g := _gauge(prometheus)), (c, g) == (_expected(PHASE_2), 0.0)),
        SETTLE_TIMEOUT,
    )
    await _drive(port, PHASE_2, seed=4)
    held = [(await _open(port, "/ws/hold"))[0] for _ in range(3)]
    await _until(
        prometheus,
        "the mix's counts twice and the 3 held connections",
        lambda: ((c := _counts(prometheus), g := _gauge(prometheus)), (c, g) == (_expected(PHASE_2, PHASE_2), 3.0)),
        SETTLE_TIMEOUT,
    )
    for ws in held:
        await asyncio.wait_for(ws.close(1000), CLIENT_TIMEOUT)
    final = _expected(PHASE_2, PHASE_2, {"client_1000": len(held)})
    await _ends_with(prometheus, final)


async def _ends_with(prometheus: Prometheus, final: Mapping[tuple[str, ...], float]) -> None:
    # Every connection closed: the counts settle at the whole mix's, the gauge at 0; then every
    # count by label, and the dashboard's queries, against them.
    await _until(
        prometheus,
        "the whole mix's counts and the gauge at 0",
        lambda: ((c := _counts(prometheus), g := _gauge(prometheus)), (c, g) == (final, 0.0)),
        SETTLE_TIMEOUT,
    )
    await asyncio.to_thread(_check_final, prometheus, final)
    await asyncio.to_thread(check_dashboard, prometheus, final)


def _check_final(prometheus: Prometheus, final: Mapping[tuple[str, ...], float]) -> None:
    for label in LABELS:
        assert prometheus.vector(f"sum by ({label}) ({CLOSES})", (label,)) == _by(final, (label,)), label
    histogram = ("outcome", "initiator", "clean")
    by_histogram = _by(final, histogram)
    assert prometheus.vector(f"sum by ({', '.join(histogram)}) ({DURATION}_count)", histogram) == by_histogram
    assert (
        prometheus.vector(f'sum by ({", ".join(histogram)}) ({DURATION}_bucket{{le="+Inf"}})', histogram)
        == by_histogram
    )
    assert prometheus.scalar("min(up)") == 1.0


# The Grafana dashboard.


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return dashboard


def _panels(panels: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in panels:
        found.append(panel)
        found += _panels(panel.get("panels", []))  # rows hold panels
    return found


def dashboard_queries() -> list[tuple[str, str, str]]:
    """Every (panel title, refId, PromQL) of the dashboard, with Grafana's variables replaced."""
    queries = []
    for panel in _panels(_dashboard()["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in (
                ("$__rate_interval", "1m"),
                ("$__interval", "1m"),
                ("${job}", ".+"),
                ("$job", ".+"),
            ):
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"a Grafana variable left in {expr!r}"
            queries.append((panel["title"], target["refId"], expr))
    return queries


def _instant(expr: str) -> str:
    """`expr` with each `rate(selector[1m])` replaced by the counter: exact values."""
    return re.sub(r"rate\(([^()\[\]]+)\[1m\]\)", r"\1", expr)


def _grouping(expr: str) -> tuple[str, ...]:
    match = re.search(r"\bby \(([^)]*)\)", expr)
    labels = [label.strip() for label in match.group(1).split(",")] if match else []
    return tuple(label for label in labels if label != "le")


def check_dashboard(prometheus: Prometheus, final: Mapping[tuple[str, ...], float]) -> None:
    """Evaluate every dashboard query; compare with the mix `final` where the value is exact."""
    outcomes = {outcome for (outcome,) in _by(final, ("outcome",))}
    total = sum(final.values())
    abnormal = sum(value for key, value in final.items() if key[LABELS.index("clean")] == "false")
    checked: set[str] = set()
    for title, ref, expr in dashboard_queries():
        by = _grouping(expr)
        where = f"panel {title!r} {ref}: {expr}"
        result = prometheus.vector(expr, by)
        assert result, f"no data: {where}"
        assert all(math.isfinite(value) and value >= 0 for value in result.values()), f"{where}: {result}"
        exact = prometheus.vector(_instant(expr), by)
        if title.startswith("Open connections"):
            assert by == () and result == exact == {(): 0.0}, where
        elif title in ("Closes per second by outcome", "Closes per second by code"):
            assert by == (title.rpartition(" ")[2],), where
            # Every kind of ending happened again in the last minute: each series has a rate.
            assert set(result) == set(exact) and all(value > 0 for value in result.values()), where
            assert exact == _by(final, by), where
        elif title == "Abnormal-close ratio":
            assert by == (), where
            [ratio] = result.values()
            assert 0 < ratio < 1, where
            assert exact == {(): pytest.approx(abnormal / total, rel=1e-12)}, where
        elif title == "Connection duration by outcome":
            assert by == ("outcome",), where
            assert {key[0] for key in result} == outcomes == {key[0] for key in exact}, where
            # Every connection lasted less than the test's timeout (150 s): no quantile can be
            # above the upper bound of the bucket that holds 150 s.
            assert all(0 < value <= 300 for value in [*result.values(), *exact.values()]), where
        elif title == "Closes since the workers started":
            assert by == LABELS, where
            assert result == exact == dict(final), where
        else:
            raise AssertionError(f"no check for {where}: add one")
        checked.add(title)
    assert checked == {panel["title"] for panel in _panels(_dashboard()["panels"]) if panel.get("targets")}


# Without servers: the dashboard's shape, and the docs' recipe is what the tier deploys.


def test_the_dashboard_is_a_grafana_dashboard_with_a_prometheus_datasource() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = _panels(dashboard["panels"])
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == panel["datasource"], panel["title"]
    exprs = [expr for _, _, expr in dashboard_queries()]
    for needle in (
        "sum by (outcome) (rate(websocket_server_closes_total",
        "sum by (code) (rate(websocket_server_closes_total",
        'clean="false"',
        "sum(websocket_server_active_connections",
        "histogram_quantile(0.5, sum by (le, outcome) (rate(websocket_server_connection_duration_seconds_bucket",
    ):
        assert any(needle in expr for expr in exprs), needle
    # The exact form of every rate query is a query of its own: nothing left to extrapolate.
    assert all("rate(" not in _instant(expr) for expr in exprs)


def _docs_prometheus_section() -> str:
    page = (REPO_ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    start = page.index("\n## Prometheus\n")
    end = page.index("\n## ", start + 1)
    return page[start:end]


def _fenced(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.DOTALL)


def test_the_docs_recipe_is_the_deployed_app_and_commands() -> None:
    section = _docs_prometheus_section()
    app = PROMAPP.read_text(encoding="utf-8")
    [recipe] = _fenced(section, "python")
    # Every line of the recipe from the metrics on (the routes are the app's own; the tier's
    # PrometheusCloseMetrics has keep_codes) is a line of the deployed app.
    wiring = recipe[recipe.index("metrics = PrometheusCloseMetrics()") :].splitlines()[1:]
    assert len([line for line in wiring if line.strip()]) >= 6
    for line in wiring:
        assert line in app.splitlines(), line
    assert "metrics = PrometheusCloseMetrics(keep_codes=KEEP_CODES)" in app
    assert 'app.mount("/metrics"' not in recipe
    commands = [line for block in _fenced(section, "sh") for line in block.splitlines()]
    assert 'rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"' in commands
    # The server command lines the tier runs, as the docs give them (the app and address aside).
    [uvicorn_line] = [line for line in commands if line.startswith("uvicorn ")]
    [gunicorn_line] = [line for line in commands if line.startswith("gunicorn ")]
    uvicorn = deployment_command("uvicorn", WORKERS)
    gunicorn = deployment_command("gunicorn", WORKERS)
    assert uvicorn_line.split()[2:] == ["--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
    assert uvicorn[uvicorn.index("--workers") : uvicorn.index("--workers") + 2] == ["--workers", "4"]
    assert gunicorn_line.split()[2:6] == gunicorn[2:6] == ["-k", "uvicorn_worker.UvicornWorker", "--workers", "4"]
