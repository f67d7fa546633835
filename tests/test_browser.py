"""The demo in a real browser: Playwright drives Debian's Chromium against ``python -m examples.demo``.

Each case checks both sides: the server's close record (``/api/closes``, which is what the
middleware's ``on_close`` stored) and what the page shows (its own ``CloseEvent`` log and the
live table of records). What Chromium does was measured, not assumed (Chromium 156, uvicorn
0.54.0, each of its WebSocket implementations):

* tab closed, or page navigated away, while open: Chromium sends a close frame 1001 with no
  reason (the record: client, 1001 ``GOING_AWAY``, clean);
* only the browser process killed (SIGKILL): Chromium's network service, a separate process
  that owns the sockets, notices and still closes them with 1001, cleanly, before it exits;
* every Chromium process killed, the network service first (a whole-browser crash): no close
  frame, the TCP connection just ends: the record says 1006, initiator ``None``, not clean;
* handshake rejected (close before accept): Chromium logs "Error during WebSocket handshake:
  Unexpected response code: 403", fires ``error``, then ``close`` with 1006, ``wasClean``
  false; the record says REJECTED, HTTP 403.

Waits are readiness waits (Playwright's ``expect`` and bounded polling of the API), never
fixed sleeps. Without Chromium or Playwright the tests skip, unless ``CI`` is set: then they
fail.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn

from tests.support.browser_support import (
    REPO_ROOT,
    Chromium,
    DemoPage,
    DemoServer,
    ImageStats,
    close_chromium,
    expect,
    image_stats,
    kill_chromium,
    launch_chromium,
    png_size,
    require_browser,
    run_demo,
)

if TYPE_CHECKING:
    from playwright.sync_api import Playwright

pytestmark = [pytest.mark.server, pytest.mark.browser, pytest.mark.timeout(60)]

#: Set to regenerate the README's screenshot from this run.
UPDATE_SCREENSHOT = os.environ.get("UPDATE_SCREENSHOT") == "1"
SCREENSHOT = REPO_ROOT / "docs" / "demo.png"
#: The chart's bar colours (demo.js codeColour): going away, abnormal, application codes.
BAR_COLOURS = ["#2e8b57", "#c0392b", "#2f6fb3"]

EXPECT_TIMEOUT_MS = 10_000
#: What Chromium sends when a page goes away with its socket open: 1001, no reason.
GOING_AWAY = {"code": 1001, "reason": ""}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    require_browser()
    from playwright.sync_api import sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoServer]:
    """The demo as the README starts it (on a free port), shared by this module's tests."""
    require_browser()
    with run_demo() as server:
        yield server


@pytest.fixture(scope="module")
def chromium(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    browser = launch_chromium(playwright, tmp_path_factory.mktemp("chromium") / "profile")
    try:
        yield browser
    finally:
        close_chromium(browser)


def _page_name(request: pytest.FixtureRequest) -> str:
    # The test's name (and parameters) make its connection ids: readable in the table, and
    # unique in the module's server, so that a test finds its own records and rows.
    node = request.node
    name = node.originalname.removeprefix("test_")[:24]
    callspec = getattr(node, "callspec", None)
    if callspec is not None:
        name = f"{name}-{callspec.id}"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@pytest.fixture
def demo_page(chromium: Chromium, demo: DemoServer, request: pytest.FixtureRequest) -> Iterator[DemoPage]:
    page = chromium.context.new_page()
    try:
        yield DemoPage(page, demo, _page_name(request)).load()
    finally:
        if not page.is_closed():
            page.close()


def _record_fields(record: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: record[name] for name in names}


def test_the_page_is_served_by_the_app_alone(demo_page: DemoPage, demo: DemoServer) -> None:
    """Page, script, style sheet and icon come from the demo itself; nothing else is asked for."""
    page = demo_page.page
    expect(page.locator("h1")).to_contain_text("asgi-ws-close demo")
    assert demo_page.requests, "the page made no request"
    outside = [url for url in demo_page.requests if not url.startswith(demo.base_url + "/")]
    assert outside == [], f"requests outside the demo: {outside}"
    for path in ("/", "/static/demo.js", "/static/demo.css", "/static/favicon.svg"):
        response = page.request.get(demo.url(path))
        assert response.status == 200, (path, response.status)
        assert "default-src 'none'" in response.headers["content-security-policy"]
    assert [text for kind, text in demo_page.console if kind == "error"] == []


@pytest.mark.parametrize("ws", [None, "websockets", "wsproto"], ids=["default", "websockets", "wsproto"])
def test_the_page_says_which_server_and_websocket_implementation_run_it(
    ws: str | None, chromium: Chromium, demo: DemoServer, request: pytest.FixtureRequest
) -> None:
    """uvicorn by default (``--ws auto``: websockets-sansio); ``WS=...`` is honoured and shown."""
    with run_demo(ws) if ws else contextlib.nullcontext(demo) as server:
        page = chromium.context.new_page()
        try:
            demo_page = DemoPage(page, server, _page_name(request)).load()
            info = page.locator("#server-info")
            implementation = ws or "websockets-sansio"
            expect(info).to_have_attribute("data-ws-implementation", implementation)
            expect(info).to_contain_text(f"uvicorn {uvicorn.__version__}")
            expect(info).to_contain_text(f"WebSocket: {implementation}")
            assert server.api_closes()["server"]["ws_implementation"] == implementation
            # And the demo works on it: one close from the browser, recorded and shown.
            cid = demo_page.open()
            demo_page.close_from_browser(4001, "bye from browser")
            demo_page.expect_close_event(cid, code=4001, reason="bye from browser", was_clean=True)
            record = server.wait_for_record(cid)
            assert _record_fields(record, "initiator", "code", "reason", "clean") == {
                "initiator": "client",
                "code": 4001,
                "reason": "bye from browser",
                "clean": True,
            }
            demo_page.expect_row(cid, code="4001", initiator="client")
        finally:
            page.close()


def test_the_page_closes_with_4001_bye_from_browser(demo_page: DemoPage, demo: DemoServer) -> None:
    cid = demo_page.open()
    demo_page.send(cid, "hello", echoes=1)
    demo_page.send(cid, "again", echoes=2)
    demo_page.close_from_browser(4001, "bye from browser")

    demo_page.expect_close_event(cid, code=4001, reason="bye from browser", was_clean=True)
    record = demo.wait_for_record(cid)
    assert _record_fields(
        record, "path", "state", "initiator", "code", "reason", "clean", "received", "sent", "received_then_sent"
    ) == {
        "path": "/ws",
        "state": "CLOSED",
        "initiator": "client",
        "code": 4001,
        "reason": "bye from browser",
        "clean": True,
        "received": {"code": 4001, "reason": "bye from browser"},
        "sent": None,
        "received_then_sent": True,
    }
    assert (record["messages_received"], record["messages_sent"]) == (2, 2)
    assert record["duration"] > 0
    demo_page.expect_row(
        cid,
        path="/ws",
        state="CLOSED",
        initiator="client",
        code="4001",
        code_name="private use",
        reason="bye from browser",
        clean="yes",
        messages="2 / 2",
    )
    expect(demo_page.row(cid).locator('td[data-field="duration"]')).to_have_text(re.compile(r"^\d+(\.\d+)? (ms|s)$"))


@pytest.mark.parametrize("leave", ["close-tab", "navigate-away"])
def test_leaving_the_page_while_open_sends_1001_going_away(
    leave: str, chromium: Chromium, demo: DemoServer, demo_page: DemoPage
) -> None:
    """Chromium closes the socket itself with 1001 (no reason); another tab's table shows it."""
    watcher = demo_page  # stays, to show the record live
    leaving = DemoPage(chromium.context.new_page(), demo, f"{watcher.name}-leaving").load()
    cid = leaving.open()
    if leave == "close-tab":
        leaving.page.close()
    else:
        leaving.page.goto("about:blank")

    record = demo.wait_for_record(cid)
    assert _record_fields(record, "state", "initiator", "code", "reason", "clean", "received") == {
        "state": "CLOSED",
        "initiator": "client",
        "code": 1001,
        "reason": "",
        "clean": True,
        "received": GOING_AWAY,
    }
    watcher.expect_row(
        cid, initiator="client", code="1001", code_name="GOING_AWAY · going away", reason="", clean="yes"
    )
    if leave == "navigate-away":
        # Back on the demo, the same tab shows the close of the socket it had.
        leaving.load()
        leaving.expect_row(cid, code="1001")
        leaving.page.close()


def test_the_server_closes_with_4003_nope(demo_page: DemoPage, demo: DemoServer) -> None:
    cid = demo_page.open()
    demo_page.ask_server_to_close(4003, "nope")

    demo_page.expect_close_event(cid, code=4003, reason="nope", was_clean=True)
    record = demo.wait_for_record(cid)
    assert _record_fields(
        record, "state", "initiator", "code", "reason", "clean", "sent", "requested", "received_then_sent"
    ) == {
        "state": "CLOSED",
        "initiator": "app",
        "code": 4003,
        "reason": "nope",
        "clean": True,
        "sent": {"code": 4003, "reason": "nope"},
        "requested": {"code": 4003, "reason": "nope"},
        "received_then_sent": False,
    }
    # The close command is the one message the app received.
    assert (record["messages_received"], record["messages_sent"]) == (1, 0)
    demo_page.expect_row(cid, initiator="app", code="4003", code_name="private use", reason="nope", clean="yes")


def test_the_server_rejects_the_handshake(demo_page: DemoPage, demo: DemoServer) -> None:
    """The browser gets HTTP 403: an error, then a CloseEvent 1006, not clean; the record: REJECTED."""
    cid = demo_page.open("/ws/reject")

    demo_page.expect_close_event(cid, code=1006, reason="", was_clean=False)
    expect(demo_page.events(cid, "error")).to_have_count(1)
    expect(demo_page.events(cid, "open")).to_have_count(0)
    # What the browser reports, in its console (scripts are told nothing more than 1006).
    errors = [text for kind, text in demo_page.console if kind == "error"]
    assert any(f"/ws/reject?cid={cid}" in text and "Unexpected response code: 403" in text for text in errors), errors
    record = demo.wait_for_record(cid)
    assert _record_fields(record, "path", "state", "initiator", "code", "reason", "clean", "http_status", "sent") == {
        "path": "/ws/reject",
        "state": "REJECTED",
        "initiator": "app",
        "code": 1006,
        "reason": "",
        "clean": False,
        "http_status": 403,
        # What the app asked for; it never reached the browser.
        "sent": {"code": 1008, "reason": "rejected by the demo"},
    }
    demo_page.expect_row(cid, state="REJECTED (HTTP 403)", initiator="app", code="1006", clean="no")


@pytest.mark.parametrize(
    ("killed", "expected"),
    [
        pytest.param(
            "browser-process",
            {"initiator": "client", "code": 1001, "reason": "", "clean": True, "received": GOING_AWAY},
            id="browser-process",
        ),
        pytest.param(
            "every-process",
            {"initiator": None, "code": 1006, "reason": "", "clean": False, "received": None},
            id="every-process",
        ),
    ],
)
def test_the_browser_process_ends_while_connected(
    killed: str,
    expected: dict[str, Any],
    playwright: Playwright,
    demo: DemoServer,
    demo_page: DemoPage,
    tmp_path: Path,
) -> None:
    """SIGKILL Chromium with a socket open; the record (shown in another browser) says how it ended.

    Killing the browser process alone is not abrupt for the socket: the network service outlives
    it long enough to send 1001. Only when that process dies too does the server see no close
    frame (1006).
    """
    doomed = launch_chromium(playwright, tmp_path / "profile")
    try:
        victim = DemoPage(doomed.context.new_page(), demo, f"{demo_page.name}-victim").load()
        cid = victim.open()
        victim.send(cid, "still here", echoes=1)
        stragglers = kill_chromium(doomed, every_process=killed == "every-process")
        assert stragglers == [], f"Chromium processes that outlived the browser: {stragglers}"
    finally:
        close_chromium(doomed)

    record = demo.wait_for_record(cid)
    assert _record_fields(record, "state", *expected) == {"state": "CLOSED", **expected}
    assert (record["messages_received"], record["messages_sent"]) == (1, 1)
    demo_page.expect_row(
        cid,
        initiator=expected["initiator"] or "none",
        code=str(expected["code"]),
        clean="yes" if expected["clean"] else "no",
    )


def test_reasons_are_shown_as_text_never_as_html(demo_page: DemoPage, demo: DemoServer) -> None:
    """A close reason is the peer's text: the page must show it, not run it."""
    reason = '<img src=x onerror="document.title=1"><b>bold</b>&amp;'
    cid = demo_page.open()
    demo_page.close_from_browser(4002, reason)

    demo_page.expect_close_event(cid, code=4002, reason=reason, was_clean=True)
    assert demo.wait_for_record(cid)["reason"] == reason
    demo_page.expect_row(cid, reason=reason)
    page = demo_page.page
    # Parsed as HTML, the reason would have made an <img> (the page has none) and a <b>bold</b>.
    assert page.locator("img").count() == 0
    assert page.get_by_text("bold", exact=True).count() == 0
    assert page.title() == "asgi-ws-close demo"


def _assert_rendered(stats: ImageStats) -> None:
    # A page with a header, controls, a chart and a table: many colours, much ink.
    assert stats.distinct_colours >= 50, stats
    assert stats.foreground_fraction >= 0.05, stats


def test_screenshot_of_the_page_with_a_few_records(
    chromium: Chromium, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A screenshot with a few records renders (a blank page would fail the same check).

    A server of its own, so that the table shows exactly these records. ``UPDATE_SCREENSHOT=1``
    writes it to ``docs/demo.png`` for the README.
    """
    with run_demo() as server:
        page = chromium.context.new_page()
        page.set_viewport_size({"width": 1280, "height": 900})
        try:
            demo_page = DemoPage(page, server, "demo").load()
            first = demo_page.open()
            demo_page.send(first, "hello", echoes=1)
            demo_page.close_from_browser(4001, "bye from browser")
            demo_page.expect_close_event(first, code=4001, reason="bye from browser", was_clean=True)
            second = demo_page.open()
            demo_page.ask_server_to_close(4003, "nope")
            demo_page.expect_close_event(second, code=4003, reason="nope", was_clean=True)
            third = demo_page.open("/ws/reject")
            demo_page.expect_close_event(third, code=1006, reason="", was_clean=False)
            other = DemoPage(chromium.context.new_page(), server, "tab").load()
            other.open()
            other.page.close()
            expect(page.locator("#records tbody tr")).to_have_count(4)
            assert demo_page.bars() == {"1001": 1, "1006": 1, "4001": 1, "4003": 1}
            # Leave the browser-close inputs as a person would have them for the picture.
            demo_page.page.fill("#code", "4001")
            demo_page.page.fill("#reason", "bye from browser")
            page.locator("#reason").blur()  # no focus ring in the picture

            path = tmp_path / "demo.png"
            png = page.screenshot(path=path, full_page=True, animations="disabled")
            chart_png = page.locator("#chart").screenshot()
        finally:
            page.close()

    width, height = png_size(png)
    assert width == 1280 and height >= 700, (width, height)
    stats = image_stats(chromium.context.new_page, png, BAR_COLOURS)
    _assert_rendered(stats)
    chart = image_stats(chromium.context.new_page, chart_png, BAR_COLOURS)
    # Every bar colour is there, as bars (hundreds of pixels), not as a stray pixel.
    assert all(count >= 500 for count in chart.colour_counts.values()), chart

    # The check means something: a blank page fails it.
    blank_page = chromium.context.new_page()
    try:
        blank_page.set_content("<!doctype html><title>blank</title>")
        blank = image_stats(chromium.context.new_page, blank_page.screenshot(full_page=True))
    finally:
        blank_page.close()
    with pytest.raises(AssertionError):
        _assert_rendered(blank)

    if UPDATE_SCREENSHOT:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, SCREENSHOT)
