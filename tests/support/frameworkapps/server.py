"""Run a framework app under uvicorn (:mod:`tests.support.process`), and read what it reports.

:func:`run_uvicorn` runs ``python -m uvicorn <app> --port 0`` (or any command that starts
uvicorn, such as an example script with ``PORT=0``) until the block exits. :meth:`Server.observed`
waits, with a deadline, for the lines that the apps print with
:func:`~tests.support.frameworkapps.emit.emit`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from tests.support.frameworkapps.emit import PREFIX
from tests.support.process import WAIT_TIMEOUT, ServerProcess, running

__all__ = ["Server", "run_uvicorn", "uvicorn_command"]


class Server(ServerProcess):
    """A running uvicorn process that also parses what its apps reported."""

    def __init__(self, command: Sequence[str], *, env: Mapping[str, str | None] | None = None) -> None:
        self._observed: list[dict[str, Any]] = []
        super().__init__(command, env=env)

    def on_line(self, line: str) -> None:
        if line.startswith(PREFIX):
            self._observed.append(json.loads(line[len(PREFIX) :]))

    def observed(self, tag: str, source: str, timeout: float = WAIT_TIMEOUT) -> dict[str, Any]:
        """Wait for the line that ``source`` printed about the connection tagged ``tag``."""
        return self.wait_for(
            lambda: next((o for o in self._observed if o["tag"] == tag and o["source"] == source), None),
            timeout,
            f"{source!r} line for tag {tag!r}",
        )


def uvicorn_command(app_ref: str, *, ws: str = "websockets-sansio") -> list[str]:
    """``python -m uvicorn app_ref`` on 127.0.0.1 and a port the OS chooses."""
    return [sys.executable, "-m", "uvicorn", app_ref, "--host", "127.0.0.1", "--port", "0", "--ws", ws]


@contextmanager
def run_uvicorn(command: Sequence[str], *, env: Mapping[str, str | None] | None = None) -> Iterator[Server]:
    """Run ``command`` from the repository root until the block exits; yield once it listens."""
    with running(Server(command, env=env)) as server:
        yield server
