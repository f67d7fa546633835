"""The asgi-ws-close demo: a FastAPI app and a page that show how each WebSocket ended.

Start it from the repository root with ``python -m examples.demo`` and open
http://127.0.0.1:8000/ (``HOST``, ``PORT`` and ``WS`` in the environment, or ``--host``,
``--port`` and ``--ws``, change where it listens and which uvicorn WebSocket implementation
it uses). See ``app.py`` for the routes.
"""

from __future__ import annotations
