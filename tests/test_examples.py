"""examples/fastapi_app.py: the small FastAPI example logs one line per close."""

from __future__ import annotations

import logging
import re

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
