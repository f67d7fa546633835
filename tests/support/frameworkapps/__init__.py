"""Framework apps for the real-server tests, and the helpers that run and read them.

Each ``*_app`` module is loaded by uvicorn as ``tests.support.frameworkapps.<module>:app`` (Channels:
``:application``). Its handlers and its ``on_close`` hook print one line per observation to
stdout (see :func:`~tests.support.frameworkapps.emit.emit`); :mod:`tests.support.frameworkapps.server` runs
uvicorn and waits for those lines.
"""

from __future__ import annotations

__all__: list[str] = []
