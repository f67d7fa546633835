"""``python -m examples.demo``: run the demo on uvicorn (http://127.0.0.1:8000/ by default).

The environment (``HOST``, ``PORT``, ``WS``, ``LOG_LEVEL``) gives the defaults of the options,
so ``WS=wsproto python -m examples.demo`` and ``python -m examples.demo --ws wsproto`` do the
same. ``--port 0`` picks a free port: the "Uvicorn running on" line says which.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
from collections.abc import Sequence
from typing import Any

import uvicorn
import uvicorn.config

from examples.demo.app import create_app

#: uvicorn's --ws choices that can serve the demo ("none" cannot).
WS_CHOICES = ("auto", "websockets", "websockets-sansio", "wsproto")
#: The library each choice needs. uvicorn[standard] (the demo extra) brings websockets only.
WS_LIBRARIES = {"websockets": "websockets", "websockets-sansio": "websockets", "wsproto": "wsproto"}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the options, with defaults from the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo",
        description="Serve the asgi-ws-close demo page and its WebSockets on uvicorn.",
    )
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="default: $HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")), help="default: $PORT or 8000")
    parser.add_argument(
        "--ws",
        default=os.environ.get("WS", "auto"),
        choices=WS_CHOICES,
        help="uvicorn's WebSocket implementation (default: $WS or auto)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LOG_LEVEL", "info"),
        choices=("critical", "error", "warning", "info", "debug"),
        help="default: $LOG_LEVEL or info",
    )
    args = parser.parse_args(argv)
    library = WS_LIBRARIES.get(args.ws)
    if library is not None and importlib.util.find_spec(library) is None:
        # Say it now, in one line, rather than in uvicorn's traceback at the first connection.
        parser.error(f"--ws {args.ws} needs the {library} package: pip install {library}")
    return args


def log_config() -> dict[str, Any]:
    """uvicorn's logging set-up, plus the demo's close log and the middleware's hook errors."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    for name in ("examples.demo", "asgi_ws_close"):
        config["loggers"][name] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def main(argv: Sequence[str] | None = None) -> None:
    """Run the demo until Ctrl+C (or SIGTERM)."""
    args = parse_args(argv)
    app = create_app(ws_option=args.ws)
    uvicorn.run(app, host=args.host, port=args.port, ws=args.ws, log_level=args.log_level, log_config=log_config())


if __name__ == "__main__":
    main()
