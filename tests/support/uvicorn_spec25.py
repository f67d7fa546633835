"""uvicorn as a proposed change would make it: ASGI spec 2.5 on WebSocket scopes, and a
``reason`` on every ``websocket.disconnect``.

``python -m tests.support.uvicorn_spec25 <uvicorn arguments>`` patches uvicorn's three WebSocket
implementations (``--ws websockets``, ``websockets-sansio``, ``wsproto``) in this process,
then runs uvicorn's own command line:

* the scope announces ``{"version": "3.0", "spec_version": "2.5"}`` (set on ``self.scope``
  before the app is called: each implementation's ``run_asgi`` hands the app ``self.scope``);
* every ``websocket.disconnect`` the app receives carries a ``reason`` key, ``""`` when the
  server had none (the implementation's receive callable, wrapped: its result gets
  ``setdefault("reason", "")``); a reason the server did give is left as it is.

Nothing else changes: the wire, the codes, when messages come. ``tests/support/servers.py`` runs it
as the ``uvicorn-<impl>-spec25`` servers (``SPEC25_SERVERS``); ``tests/test_spec25.py``
compares what the middleware records under it with plain uvicorn.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.config import UvicornDeprecationWarning

__all__ = ["PATCHED", "SPEC_VERSION", "main", "patch"]

SPEC_VERSION = "2.5"

_IMPLS = "uvicorn.protocols.websockets."

#: The protocol classes patched (module, class), and the name of the method each hands the
#: app as ``receive``. Imported by :func:`patch` only, not by importing this module.
PATCHED: tuple[tuple[str, str, str], ...] = (
    (_IMPLS + "websockets_impl", "WebSocketProtocol", "asgi_receive"),
    (_IMPLS + "websockets_sansio_impl", "WebSocketsSansIOProtocol", "receive"),
    (_IMPLS + "wsproto_impl", "WSProtocol", "receive"),
)

_MARK = "_asgi_ws_close_spec25"


def _with_reason(receive: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    @functools.wraps(receive)
    async def wrapped(self: Any) -> Any:
        message = await receive(self)
        if message.get("type") == "websocket.disconnect":
            message.setdefault("reason", "")
        return message

    return wrapped


def _announcing_spec(run_asgi: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    @functools.wraps(run_asgi)
    async def wrapped(self: Any) -> None:
        # A copy: uvicorn builds a fresh asgi dict per scope, but never share one by accident.
        self.scope["asgi"] = {**self.scope["asgi"], "spec_version": SPEC_VERSION}
        await run_asgi(self)

    return wrapped


def patch() -> None:
    """Patch the three implementations (once: a second call changes nothing).

    Importing the legacy ``websockets_impl`` warns (UvicornDeprecationWarning, and
    websockets' DeprecationWarning for ``websockets.legacy``) even when another
    implementation runs; those warnings are silenced here, so the patched server prints them
    for none of the implementations (plain uvicorn prints them for ``--ws websockets``).
    """
    for module_name, class_name, receive_name in PATCHED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UvicornDeprecationWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # websockets.legacy
            module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
        if getattr(cls, _MARK, False):
            continue
        setattr(cls, receive_name, _with_reason(getattr(cls, receive_name)))
        cls.run_asgi = _announcing_spec(cls.run_asgi)
        setattr(cls, _MARK, True)


def main() -> None:
    """Patch, then run uvicorn's command line with this process's arguments."""
    patch()
    from uvicorn.main import main as uvicorn_main

    uvicorn_main(prog_name="uvicorn")


if __name__ == "__main__":
    main()
