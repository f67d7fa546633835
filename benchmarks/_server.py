"""Child process: serve one app of ``_apps.py`` with uvicorn on a port the OS picks.

``python -m benchmarks._server --app NAME --ws IMPL`` binds 127.0.0.1:0 and starts listening
*before* it prints ``{"port": N}`` on stdout, so a client that connects as soon as it reads the
line just waits in the backlog until uvicorn accepts: no polling, no sleeps. It runs until
SIGTERM (uvicorn's graceful shutdown). Logging is at warning level and the access log is off,
so that both variants do the same (no) logging work per connection.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys

import uvicorn

from benchmarks._apps import SERVER_APPS, server_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", choices=SERVER_APPS, required=True)
    parser.add_argument("--ws", default="websockets", help="uvicorn --ws implementation")
    args = parser.parse_args()

    # proto=IPPROTO_TCP, as uvicorn's own getaddrinfo() socket has: asyncio sets TCP_NODELAY
    # only on sockets that say they are TCP, and Nagle would hold back small responses ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    config = uvicorn.Config(
        server_app(args.app),
        ws=args.ws,
        http="h11",  # the same HTTP parser in every run, whatever else is installed
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    print(json.dumps({"port": sock.getsockname()[1], "pid": os.getpid()}), flush=True)
    server.run(sockets=[sock])
    sys.exit(0)


if __name__ == "__main__":
    main()
