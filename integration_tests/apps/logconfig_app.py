"""A raw ASGI app for the --log-config tests: its module logger is created at import, as most apps'
are, so a dictConfig applied after the import would disable it (uvicorn applies the file first)."""

import logging
import sys

logger = logging.getLogger("logconfig_app")
logger.warning("logconfig_app imported")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    tag = scope["query_string"].decode()
    if scope["path"] == "/error":
        raise RuntimeError(f"failing on purpose {tag}")
    if scope["path"] == "/print":
        print(f"printed-{tag}", flush=True)
        print(f"printed-to-stderr-{tag}", file=sys.stderr, flush=True)
    if scope["path"] == "/debug":
        logger.debug("app-debug-%s", tag)
    logger.info("app-info-%s", tag)
    logger.warning("app-warning-%s", tag)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"logged"})
