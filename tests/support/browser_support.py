"""Helpers for the browser tests: the demo as a uvicorn subprocess, Debian's Chromium, PNG checks.

* :func:`run_demo` runs ``python -m examples.demo`` with ``PORT=0`` (the README's command, on a
  free port) with the tiers' runner, :mod:`tests.support.process`.
* :func:`launch_chromium` starts ``/usr/bin/chromium`` through Playwright with a fresh profile,
  and finds the browser's PID (Playwright for Python does not expose it) so that a test can
  kill exactly that process: :func:`kill_chromium`.
* :func:`image_stats` decodes a PNG in the browser and measures it, so that a screenshot can
  be checked to show something (a blank page fails).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.process import REPO_ROOT, ServerProcess, running

try:
    from playwright.sync_api import Locator, Page, expect
except ImportError:  # require_browser() says what is missing: a skip, or under CI a failure
    if not TYPE_CHECKING:
        Locator = Page = expect = None

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "REPO_ROOT",
    "Chromium",
    "chromium_processes",
    "close_chromium",
    "DemoPage",
    "DemoServer",
    "ImageStats",
    "image_stats",
    "kill_chromium",
    "launch_chromium",
    "png_size",
    "require_browser",
    "expect",
    "run_demo",
]

#: Debian's Chromium (``apt-get install chromium``): Playwright's own download is not possible here.
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
#: Headless, and nothing that would reach the network on its own (no QUIC, no component or
#: sync traffic, no first-run pages). Playwright adds ``--user-data-dir`` for the fresh profile.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

STARTUP_TIMEOUT = 20.0
RECORD_TIMEOUT = 10.0
POLL_INTERVAL = 0.02

# The utility process that owns the sockets.
NETWORK_SERVICE = "--utility-sub-type=network.mojom.NetworkService"


def require_browser() -> None:
    """Skip (fail under CI) unless Playwright and Debian's Chromium are installed.

    CI installs both (``.ci/install-browser``): there, a missing browser is a broken set-up,
    not a reason to skip.
    """
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install -y chromium, or bash .ci/install-browser)")
    if not missing:
        return
    message = "browser tests need " + " and ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI is set, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)


# ----- the demo server -----


class DemoServer(ServerProcess):
    """The demo running under uvicorn in a subprocess: its URL, PID, log and close records."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return super().url(path, scheme)

    def api_closes(self) -> dict[str, Any]:
        """``GET /api/closes``: ``{"server": ..., "limit": ..., "records": [newest first]}``."""
        with urllib.request.urlopen(self.url("/api/closes"), timeout=5) as response:
            result: dict[str, Any] = json.load(response)
        return result

    def records(self) -> list[dict[str, Any]]:
        return list(self.api_closes()["records"])

    def wait_for_record(self, cid: str, timeout: float = RECORD_TIMEOUT) -> dict[str, Any]:
        """Poll ``/api/closes`` until the record of connection ``cid`` is there; return it."""
        deadline = time.monotonic() + timeout
        while True:
            found = [record for record in self.records() if record["cid"] == cid]
            if found:
                assert len(found) == 1, f"several records for {cid}: {found}"
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no close record for cid {cid!r} within {timeout} s; {self.describe()}")
            time.sleep(POLL_INTERVAL)


@contextmanager
def run_demo(ws: str | None = None) -> Iterator[DemoServer]:
    """Run ``python -m examples.demo --port 0`` from the repository root (``WS=ws`` if given)."""
    env = {"HOST": "127.0.0.1", "PORT": "0", "WS": ws}
    with running(DemoServer([sys.executable, "-m", "examples.demo"], name="demo", env=env), STARTUP_TIMEOUT) as server:
        yield server


# ----- the page -----


class DemoPage:
    """The demo page in one tab, driven as a person would: clicks, typing, reading the page.

    ``name`` becomes the page's ``?page=``, so its connections are ``NAME-1``, ``NAME-2``...:
    a test finds its own server records and table rows by these ids, whatever else runs.
    """

    def __init__(self, page: Page, server: DemoServer, name: str) -> None:
        self.page = page
        self.server = server
        self.name = name
        self.console: list[tuple[str, str]] = []
        self.requests: list[str] = []
        page.on("console", lambda message: self.console.append((message.type, message.text)))
        page.on("request", lambda request: self.requests.append(request.url))

    def load(self) -> DemoPage:
        """Open the page and wait until its live feed is connected (the table is current)."""
        self.page.goto(self.server.url(f"/?page={self.name}"))
        expect(self.page.locator("#monitor-status")).to_have_attribute("data-state", "live")
        return self

    def open(self, path: str = "/ws") -> str:
        """Click the button that opens a socket to ``path``; return its connection id."""
        button = "#open" if path == "/ws" else "#open-reject"
        self.page.click(button)
        cid = self.page.locator("#socket-cid").text_content()
        assert cid and cid.startswith(f"{self.name}-"), cid
        if path == "/ws":
            expect(self.page.locator("#socket-state")).to_have_attribute("data-state", "OPEN")
        return cid

    def send(self, cid: str, text: str, *, echoes: int) -> None:
        """Send ``text`` and wait until the page has shown ``echoes`` echoes on ``cid``."""
        self.page.fill("#message", text)
        self.page.click("#send")
        expect(self.events(cid, "message")).to_have_count(echoes)

    def close_from_browser(self, code: int, reason: str) -> None:
        self._fill_close(code, reason)
        self.page.click("#close-browser")

    def ask_server_to_close(self, code: int, reason: str) -> None:
        self._fill_close(code, reason)
        self.page.click("#close-server")

    def _fill_close(self, code: int, reason: str) -> None:
        self.page.fill("#code", str(code))
        self.page.fill("#reason", reason)

    def events(self, cid: str, kind: str) -> Locator:
        """The entries of "What this page saw" of one kind (open, message, error, close...)."""
        return self.page.locator(f'#events li[data-kind="{kind}"][data-cid="{cid}"]')

    def expect_close_event(self, cid: str, *, code: int, reason: str, was_clean: bool) -> None:
        """Wait until the page shows the socket's ``CloseEvent`` with these values."""
        event = self.events(cid, "close")
        expect(event).to_have_count(1)
        expect(event).to_have_attribute("data-code", str(code))
        expect(event).to_have_attribute("data-reason", reason)
        expect(event).to_have_attribute("data-was-clean", "true" if was_clean else "false")
        expect(event).to_contain_text(f"code={code} reason={json.dumps(reason)} wasClean={str(was_clean).lower()}")

    def row(self, cid: str) -> Locator:
        """The row of connection ``cid`` in the table of close records."""
        return self.page.locator(f'#records tbody tr[data-cid="{cid}"]')

    def expect_row(self, cid: str, **cells: str) -> None:
        """Wait until the table has the row of ``cid``, with these texts (``code_name=...``)."""
        row = self.row(cid)
        expect(row).to_have_count(1)
        for field, text in cells.items():
            expect(row.locator(f'td[data-field="{field.replace("_", "-")}"]')).to_have_text(text)

    def bars(self) -> dict[str, int]:
        """The chart's bars: code -> count."""
        bars = self.page.locator("#chart rect.bar")
        return {str(bar.get_attribute("data-code")): int(str(bar.get_attribute("data-count"))) for bar in bars.all()}


# ----- Chromium -----


@dataclass
class Chromium:
    """A Chromium started by Playwright: its context, profile directory and browser PID."""

    context: Any  # playwright.sync_api.BrowserContext (playwright is imported lazily)
    user_data_dir: Path
    pid: int


def _processes_using(user_data_dir: Path) -> dict[int, str]:
    # Every Chromium process of this profile names it on its command line: the browser with
    # --user-data-dir=..., its children (zygotes, renderers, GPU, network service) likewise.
    # The children rewrite their argv into one space-separated string: match on the text.
    marker = re.compile(rf"(?:^|\s)--user-data-dir={re.escape(str(user_data_dir))}(?:\s|$)")
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone, or not ours to read
        cmdline = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
        if marker.search(cmdline):
            found[int(entry.name)] = cmdline
    return found


def chromium_processes(browser: Chromium) -> dict[int, str]:
    """The PIDs and command lines of all the processes of this browser's profile."""
    return _processes_using(browser.user_data_dir)


def _browser_pid(user_data_dir: Path) -> int:
    # The browser process is the one without --type= (children are --type=renderer, ...).
    browsers = [pid for pid, cmdline in _processes_using(user_data_dir).items() if " --type=" not in cmdline]
    if len(browsers) != 1:
        raise AssertionError(f"expected one Chromium browser process for {user_data_dir}, found {browsers}")
    return browsers[0]


def launch_chromium(playwright: Any, user_data_dir: Path, **options: Any) -> Chromium:
    """Start Debian's Chromium with a fresh profile in ``user_data_dir`` (which must not exist)."""
    user_data_dir.mkdir(parents=True)
    context = playwright.chromium.launch_persistent_context(
        user_data_dir=str(user_data_dir),
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        headless=True,
        **options,
    )
    return Chromium(context=context, user_data_dir=user_data_dir, pid=_browser_pid(user_data_dir))


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone


def kill_chromium(browser: Chromium, *, every_process: bool = False, timeout: float = 10.0) -> list[int]:
    """SIGKILL the browser process, or all the profile's processes; wait until all are gone.

    Args:
        every_process: Kill every process of the profile, the network service (which holds
            the sockets) first, as a crash of the whole browser or a machine losing power
            would. Otherwise only the browser process is killed, and its children end on their
            own when they lose it.

    Returns:
        The PIDs that were still there after ``timeout`` and had to be killed too (normally
        none: children exit when the browser's IPC channel closes).
    """
    if every_process:
        processes = chromium_processes(browser)
        network = [pid for pid, cmdline in processes.items() if NETWORK_SERVICE in cmdline]
        for pid in [*network, browser.pid, *processes]:
            _kill(pid)
    else:
        _kill(browser.pid)
    deadline = time.monotonic() + timeout
    while chromium_processes(browser) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    stragglers = sorted(chromium_processes(browser))
    for pid in stragglers:
        _kill(pid)
    return stragglers


def close_chromium(browser: Chromium) -> None:
    """Close a browser that may already be dead; make sure none of its processes stay."""
    try:
        browser.context.close()
    except Exception:  # killed on purpose: Playwright reports the lost connection
        pass
    if _processes_using(browser.user_data_dir):
        kill_chromium(browser, timeout=5.0)


# ----- screenshots -----


@dataclass(frozen=True)
class ImageStats:
    """What a decoded image shows: size, colours, and how much of it is not the background."""

    width: int
    height: int
    distinct_colours: int
    #: The share of pixels that differ from the most common colour (the background).
    foreground_fraction: float
    #: How many pixels have each of the colours asked for (``#rrggbb``), within a tolerance.
    colour_counts: dict[str, int]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; fails if ``data`` is not a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR", "PNG without IHDR first"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


_IMAGE_STATS_JS = """
async ([dataUrl, colours]) => {
  const image = new Image();
  image.src = dataUrl;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const counts = new Map();
  const channel = (hex, start) => parseInt(hex.slice(start, start + 2), 16);
  const wanted = colours.map((hex) => [hex, channel(hex, 1), channel(hex, 3), channel(hex, 5)]);
  const colourCounts = Object.fromEntries(colours.map((hex) => [hex, 0]));
  for (let i = 0; i < pixels.length; i += 4) {
    const r = pixels[i], g = pixels[i + 1], b = pixels[i + 2];
    const key = (r << 16) | (g << 8) | b;
    counts.set(key, (counts.get(key) || 0) + 1);
    for (const [hex, wr, wg, wb] of wanted) {
      if (Math.abs(r - wr) <= 6 && Math.abs(g - wg) <= 6 && Math.abs(b - wb) <= 6) colourCounts[hex] += 1;
    }
  }
  const total = pixels.length / 4;
  const background = Math.max(...counts.values());
  return {
    width: canvas.width,
    height: canvas.height,
    distinct_colours: counts.size,
    foreground_fraction: (total - background) / total,
    colour_counts: colourCounts,
  };
}
"""


def image_stats(new_page: Callable[[], Any], png: bytes, colours: list[str] | None = None) -> ImageStats:
    """Decode ``png`` with the browser's own decoder (in a blank page) and measure it.

    No imaging library needed: a canvas gives the pixels. ``new_page`` makes the page to use
    (it is closed afterwards).
    """
    page = new_page()
    try:
        data_url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        result = page.evaluate(_IMAGE_STATS_JS, [data_url, colours or []])
    finally:
        page.close()
    return ImageStats(**result)
