"""The test app of the deployment-surface tests (integration_tests/test_deploy_*.py).

Every endpoint of ``testapp`` (the scope echo at any path, ``/_/pid``, ``/_/echo``, ``/_/lifespan``,
...), plus:

* ``GET /_/env?names=A,B`` → ``{"A": value or null, "B": ...}`` from the worker's ``os.environ``
* ``GET /_/seen``          → the JSON list of the paths of the http requests this worker was given
  (``/_/seen`` itself excluded), so that a test can tell that the gateway answered without the app.

State is per worker process: the tests that read ``/_/seen`` run with ``--workers 1``.
"""

from __future__ import annotations

import os
from typing import Any

from testapp import app as testapp_app
from testapp import query, respond_json

SEEN: list[str] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        path = scope["path"]
        if path == "/_/env":
            names = [name for name in query(scope).get("names", "").split(",") if name]
            await respond_json(send, {name: os.environ.get(name) for name in names})
            return
        if path == "/_/seen":
            await respond_json(send, SEEN)
            return
        SEEN.append(path)
    await testapp_app(scope, receive, send)
