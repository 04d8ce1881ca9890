"""An app that writes to stdout and logs through ``logging`` at import and on every request.

For integration_tests/test_deploy_logging.py: the gateway forwards the workers' stdout and stderr to its
own log, line by line, with the worker id. Each line carries a marker that the tests look for:

* at import: ``chatty-app print at import pid=PID`` (stdout) and ``chatty-app warning at import
  pid=PID`` (``logging.getLogger("myapp").warning``);
* per request to PATH: ``chatty-app print for PATH pid=PID`` and ``chatty-app warning for PATH
  pid=PID``. The response body is the worker's pid.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("myapp")

print(f"chatty-app print at import pid={os.getpid()}")
log.warning("chatty-app warning at import pid=%d", os.getpid())


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    print(f"chatty-app print for {path} pid={os.getpid()}")
    log.warning("chatty-app warning for %s pid=%d", path, os.getpid())
    while (await receive()).get("more_body", False):
        pass
    body = str(os.getpid()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
