"""Framework apps for the real-server tests, and the helpers that run and read them.

Each ``*_app`` module is loaded by uvicorn as ``tests.frameworkapps.<module>:app`` (Channels:
``:application``). Its handlers and its ``on_close`` hook print one line per observation to
stdout (see :func:`~tests.frameworkapps.emit.emit`); :mod:`tests.frameworkapps.server` runs
uvicorn and waits for those lines.
"""

from __future__ import annotations

__all__: list[str] = []
