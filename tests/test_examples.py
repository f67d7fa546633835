"""The examples: examples/fastapi_app.py logs one line per close; examples/observability.py
serves its Prometheus metrics at /metrics."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from asgi_ws_close.integrations.logging import EXTRA_KEY
from examples.fastapi_app import app


def test_every_close_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="asgi_ws_close"), TestClient(app) as client:
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
            ws.close(4001, "bye\nforged")
        with client.websocket_connect("/ws") as ws:
            ws.send_text("close 4003 nope")
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_text()
    assert (info.value.code, info.value.reason) == (4003, "nope")
    lines = [r.getMessage() for r in caplog.records if r.name == "asgi_ws_close"]
    assert len(lines) == 2
    # The peer's newline is escaped: one line per close, whatever the reason holds.
    assert re.fullmatch(
        r"WebSocket /ws closed by client after [\d.]+ s, clean: 4001 \(private use\) bye\\nforged", lines[0]
    )
    assert re.fullmatch(r"WebSocket /ws closed by app after [\d.]+ s, clean: 4003 \(private use\) nope", lines[1])
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "asgi_ws_close")
    # The structured fields say how each ended (the test client gives no http_version).
    fields = [getattr(r, EXTRA_KEY) for r in caplog.records if r.name == "asgi_ws_close"]
    assert [(f["outcome"], f["initiator"], f["code"], f["http_version"]) for f in fields] == [
        ("client_closed", "client", 4001, None),
        ("app_closed", "app", 4003, None),
    ]


def test_the_page_is_served() -> None:
    with TestClient(app) as client:
        page = client.get("/")
    assert page.status_code == 200
    assert "new WebSocket" in page.text


# examples/observability.py registers its metrics in prometheus-client's default registry:
# it runs in a process of its own.
_OBSERVABILITY_CHECK = """
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from examples.observability import app

with TestClient(app) as client:
    with client.websocket_connect("/ws") as ws:
        ws.send_text("close 4003 nope")
        try:
            ws.receive_text()
        except WebSocketDisconnect as exc:
            assert (exc.code, exc.reason) == (4003, "nope"), exc
    response = client.get("/metrics", follow_redirects=False)
assert response.status_code == 200, response.status_code
assert response.headers["content-type"].startswith("text/plain"), response.headers
lines = [line for line in response.text.splitlines() if line.startswith("websocket_server_closes_total{")]
assert lines == [
    'websocket_server_closes_total{clean="true",code="4003",initiator="app",outcome="app_closed"} 1.0'
], lines
"""


def test_the_observability_example_serves_its_metrics_without_a_redirect(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", _OBSERVABILITY_CHECK],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
