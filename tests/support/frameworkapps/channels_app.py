"""Django Channels app for the real-server tests: the ASGI application wrapped the way
Channels' own middlewares wrap it, with a scope-copying middleware inside (as
``AuthMiddlewareStack`` is), an async and a sync consumer.

Both consumers echo text; "close" makes them close with 4003 "nope". ``disconnect()``
prints what the consumer read from the context.
"""

from __future__ import annotations

import os
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer
from channels.middleware import BaseMiddleware
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path

from asgi_ws_close import WebSocketCloseMiddleware, get_close_context
from tests.support.frameworkapps.emit import emit, on_close

__all__ = ["AsyncEcho", "CopyingMiddleware", "SyncEcho", "application", "websocket_urlpatterns"]

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.frameworkapps.django_settings")
django_asgi_app = get_asgi_application()  # django.setup()


class AsyncEcho(AsyncWebsocketConsumer):  # type: ignore[misc]
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "close":
            await self.close(code=4003, reason="nope")
        else:
            await self.send(text_data=text_data)

    async def disconnect(self, code: int) -> None:
        emit("handler", self.scope, get_close_context(self.scope), close_code=code, copied=self.scope.get("copied"))


class SyncEcho(WebsocketConsumer):  # type: ignore[misc]
    # Its handlers run in a worker thread: the context is read through the scope all the same.
    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "close":
            self.close(code=4003, reason="nope")
        else:
            self.send(text_data=text_data)

    def disconnect(self, code: int) -> None:
        emit("handler", self.scope, get_close_context(self.scope), close_code=code, copied=self.scope.get("copied"))


class CopyingMiddleware(BaseMiddleware):  # type: ignore[misc]
    """Copies the scope and adds a key, as Channels' AuthMiddleware does."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        return await super().__call__(dict(scope, copied=True), receive, send)


websocket_urlpatterns = [
    path("ws/async/", AsyncEcho.as_asgi()),
    path("ws/sync/", SyncEcho.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": WebSocketCloseMiddleware(CopyingMiddleware(URLRouter(websocket_urlpatterns)), on_close=on_close),
    }
)
