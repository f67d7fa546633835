"""Framework apps for the real-server tests, and the helpers that run and read them.

Each ``*_app`` module is loaded by uvicorn as ``tests.support.frameworkapps.<module>:app``
(Channels: ``:application``), as :data:`FRAMEWORK_APPS` lists them. Its handlers and its
``on_close`` hook print one line per observation to stdout (see
:func:`~tests.support.frameworkapps.emit.emit`); :mod:`tests.support.frameworkapps.server` runs
uvicorn and waits for those lines, and the ``framework_server`` fixture (``tests/conftest.py``)
runs one app per framework for a module.
"""

from __future__ import annotations

__all__ = ["FRAMEWORK_APPS"]

#: The framework -> the app that uvicorn loads.
FRAMEWORK_APPS = {
    "channels": "tests.support.frameworkapps.channels_app:application",
    "fastapi": "tests.support.frameworkapps.fastapi_app:app",
    "litestar": "tests.support.frameworkapps.litestar_app:app",
    "starlette": "tests.support.frameworkapps.starlette_app:app",
}
