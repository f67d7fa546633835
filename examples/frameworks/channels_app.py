"""Django Channels: wrap the websocket application, read the context in the consumer.

Run it with ``python examples/frameworks/channels_app.py`` (127.0.0.1:8000, or ``PORT``),
then connect to ``ws://127.0.0.1:8000/ws/echo/``. Settings: channels_settings.py.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import path

from asgi_ws_close import CloseContext, WebSocketCloseMiddleware, get_close_context

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "channels_settings")
django_asgi_app = get_asgi_application()

logger = logging.getLogger("example")


def log_close(context: CloseContext, scope: Any) -> None:
    logger.info("closed %s %s", scope["path"], json.dumps(context.to_dict()))


class Echo(AsyncWebsocketConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data)

    async def disconnect(self, code: int) -> None:
        # Channels passes the code; the context also says who closed, the reason, and more.
        logger.info("consumer saw: %s", get_close_context(self.scope))


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Outermost in the websocket stack (outside AuthMiddlewareStack, if you use it):
        # the scope copies that inner middlewares make share the same context.
        "websocket": WebSocketCloseMiddleware(URLRouter([path("ws/echo/", Echo.as_asgi())]), on_close=log_close),
    }
)

if __name__ == "__main__":
    import uvicorn

    logging.basicConfig(level=logging.INFO)
    uvicorn.run(application, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
