"""A real Prometheus, and multi-worker deployments of the docs' recipe for it to scrape.

* `run_prometheus`: Debian's `prometheus` binary on 127.0.0.1, on the port the OS
  gives it (`--web.listen-address 127.0.0.1:0`; Prometheus logs the port it got:
  `msg="Listening on" address=127.0.0.1:PORT`), a temporary config (one job, 1 s scrape
  interval) and a temporary TSDB, ready once `/-/ready` answers 200; queried through
  `/api/v1/query` (`Prometheus.vector`, `Prometheus.scalar`).
* `run_deployment`: `tests.support.promapp:app` under `uvicorn --workers N` or
  `gunicorn -k uvicorn_worker.UvicornWorker --workers N`, the command lines of docs/observability.md,
  in multiprocess mode with a fresh `PROMETHEUS_MULTIPROC_DIR`; ready once the port is known
  and every worker has built its app.

Both are run by `tests.support.process.run_process`, the process runner of every tier: its
own session, output drained, stopped by its PID (SIGTERM, then SIGKILL), then each worker
process it had, by its own PID and start time.
"""

from __future__ import annotations

import ast
import http.client
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from tests.support.process import REPO_ROOT, ServerProcess, descendants, process_stat, run_process

__all__ = [
    "PROMAPP",
    "Deployment",
    "Prometheus",
    "deployment_command",
    "http_get",
    "promapp_constant",
    "prometheus_binary",
    "run_deployment",
    "run_prometheus",
]

#: The deployed app's source. The test process never imports it: that would build the app
#: and register its metrics in prometheus-client's default registry, for every other test of
#: the process to collide with.
PROMAPP = REPO_ROOT / "tests" / "support" / "promapp.py"


def promapp_constant(name: str) -> Any:
    """The value of the module-level constant `name = <literal>` of `tests.support.promapp`."""
    for node in ast.parse(PROMAPP.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [getattr(target, "id", None) for target in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise LookupError(f"no constant {name} in {PROMAPP}")


READY_DIR_ENV: str = promapp_constant("READY_DIR_ENV")

STARTUP_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0
POLL_INTERVAL = 0.1

ServerKind = Literal["uvicorn", "gunicorn"]

_PROMETHEUS_LISTENING = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')
_PORT_LINES: dict[ServerKind, re.Pattern[str]] = {
    "uvicorn": re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)"),
    "gunicorn": re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)"),
}


def prometheus_binary() -> str | None:
    """The `prometheus` binary on PATH (Debian's package puts it in /usr/bin), or None."""
    return shutil.which("prometheus")


def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET `path` on 127.0.0.1 (plain http.client: no proxy from the environment applies)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@contextmanager
def _launch(
    argv: Sequence[str], *, env: Mapping[str, str], description: str, port_line: re.Pattern[str]
) -> Iterator[ServerProcess]:
    """Run ``argv`` (an executable and its arguments) with exactly ``env`` (variables not in it are removed) until the
    block exits; yield it once it listens."""
    overlay: dict[str, str | None] = {key: None for key in os.environ if key not in env}
    overlay.update(env)
    with run_process(list(argv), env=overlay, name=description, port_line=port_line) as server:
        yield server


def _wait(predicate: Callable[[], bool], timeout: float, message: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s: {message()}")
        time.sleep(POLL_INTERVAL)


# Prometheus.


class Prometheus:
    """A running Prometheus: its port, and its HTTP query API."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.port = server.port

    def query(self, expr: str) -> dict[str, Any]:
        """`GET /api/v1/query?query=expr` (now): the `data` of a successful answer."""
        status, _, body = http_get(self.port, "/api/v1/query?" + urlencode({"query": expr}))
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: HTTP {status} {answer!r}")
        data: dict[str, Any] = answer["data"]
        return data

    def vector(self, expr: str, by: Sequence[str] = ()) -> dict[tuple[str, ...], float]:
        """An instant vector as {(values of the labels `by`): value}; every label set distinct."""
        data = self.query(expr)
        if data["resultType"] != "vector":
            raise AssertionError(f"query {expr!r} is a {data['resultType']}, not a vector")
        result: dict[tuple[str, ...], float] = {}
        for sample in data["result"]:
            key = tuple(sample["metric"].get(label, "") for label in by)
            assert key not in result, f"query {expr!r}: two samples for {key}: {data['result']!r}"
            result[key] = float(sample["value"][1])
        return result

    def scalar(self, expr: str) -> float | None:
        """The value of a query that yields one sample, or None when it yields none."""
        values = self.vector(expr)
        if not values:
            return None
        assert len(values) == 1, f"query {expr!r} yields {len(values)} samples"
        return next(iter(values.values()))

    def describe(self) -> str:
        return self.server.describe()


def _prometheus_config(targets: Mapping[str, int]) -> str:
    # JSON is YAML: no YAML library needed.
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]} for job, port in targets.items()
        ],
    }
    return json.dumps(config, indent=2)


@contextmanager
def run_prometheus(binary: str, directory: Path, targets: Mapping[str, int]) -> Iterator[Prometheus]:
    """Run `binary` scraping `targets` ({job: port on 127.0.0.1}) every second."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(_prometheus_config(targets), encoding="utf-8")
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={directory / 'data'}",
        "--web.listen-address=127.0.0.1:0",
        "--log.level=info",
    ]
    with _launch(argv, env=os.environ, description="prometheus", port_line=_PROMETHEUS_LISTENING) as server:
        prometheus = Prometheus(server)

        def ready() -> bool:
            try:
                return http_get(prometheus.port, "/-/ready")[0] == 200
            except OSError:
                return False

        _wait(ready, STARTUP_TIMEOUT, lambda: f"/-/ready never answered 200; {server.describe()}")
        yield prometheus


# The deployments.


def deployment_command(kind: ServerKind, workers: int | None) -> list[str]:
    """The docs' command line for `kind` (after `python -m`), on 127.0.0.1:0.

    `workers=None`: uvicorn's one process, without `--workers`.
    """
    app = "tests.support.promapp:app"
    if kind == "uvicorn":
        several = [] if workers is None else ["--workers", str(workers)]
        return ["uvicorn", app, "--host", "127.0.0.1", "--port", "0", *several] + [
            # Bounded stops if a test fails with connections still open.
            "--timeout-graceful-shutdown",
            "5",
        ]
    assert workers is not None, "gunicorn always has a number of workers"
    return [
        "gunicorn",
        app,
        "-k",
        "uvicorn_worker.UvicornWorker",
        "--workers",
        str(workers),
        "--bind",
        "127.0.0.1:0",
        "--graceful-timeout",
        "5",
    ]


@dataclass
class Deployment:
    """A running multi-worker server of `tests.support.promapp`."""

    kind: ServerKind
    server: ServerProcess
    workers: int | None
    ready_dir: Path
    multiproc_dir: Path | None

    @property
    def port(self) -> int:
        return self.server.port

    def started_workers(self) -> set[int]:
        """Every worker PID that has built its app so far, dead ones included."""
        return {int(path.name.removeprefix("ready-")) for path in self.ready_dir.glob("ready-*")}

    def live_workers(self) -> set[int]:
        """The worker PIDs that built their app and are running processes of this server now."""
        # With no --workers, uvicorn's one process is the worker.
        family = {self.server.pid} | {pid for pid, _ in descendants(self.server.pid)}
        return {pid for pid in self.started_workers() if pid in family and process_stat(pid) is not None}

    def wait_workers(self, count: int, timeout: float = STARTUP_TIMEOUT) -> set[int]:
        """Wait until `count` workers are running with their app built; return their PIDs."""
        _wait(
            lambda: len(self.live_workers()) >= count,
            timeout,
            lambda: f"{count} live workers wanted, have {sorted(self.live_workers())}; {self.server.describe()}",
        )
        return self.live_workers()

    def describe(self) -> str:
        return self.server.describe()


@contextmanager
def run_deployment(kind: ServerKind, directory: Path, *, workers: int | None = 4) -> Iterator[Deployment]:
    """Run the docs' recipe under `kind` with `workers` workers, in multiprocess mode.

    `PROMETHEUS_MULTIPROC_DIR` is a new empty directory, as the docs'
    `rm -rf ... && mkdir -p ...` before each start makes it. `workers=None` (uvicorn only):
    one process, and no `PROMETHEUS_MULTIPROC_DIR` at all, as the docs run a single process.
    """
    ready_dir = directory / "ready"
    multiproc_dir = None if workers is None else directory / "prometheus-multiproc"
    for path in (ready_dir, multiproc_dir):
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
    env = {key: value for key, value in os.environ.items() if key.lower() != "prometheus_multiproc_dir"}
    env.update({READY_DIR_ENV: str(ready_dir), "PYTHONUNBUFFERED": "1"})
    if multiproc_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    argv = [sys.executable, "-m", *deployment_command(kind, workers)]
    with _launch(argv, env=env, description=" ".join(argv[2:]), port_line=_PORT_LINES[kind]) as server:
        deployment = Deployment(kind, server, workers, ready_dir, multiproc_dir)
        deployment.wait_workers(workers or 1)
        yield deployment
