"""asgi-gateway's Python worker: runs an unmodified ASGI 3 app behind the Go gateway.

The package is organised like uvicorn's ``httptools_impl``: ``protocol`` (the wire format of
protocol/SPEC.md), ``connection`` (the gateway socket, an ``asyncio.Protocol``), ``cycle`` (one HTTP
request/response cycle: scope, receive, send, END), ``websocket`` (one WebSocket stream),
``lifespan`` (the lifespan protocol), ``types`` (ASGI typing), ``worker`` (process: app loading,
event loop, signals) and ``__main__`` (command line). This module imports nothing heavy, so that
``python -m python_worker`` can report a missing ``msgpack`` before anything needs it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClientDisconnected", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "ClientDisconnected":
        from .cycle import ClientDisconnected

        return ClientDisconnected
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
