"""A raw ASGI app that answers with the response header fields it is told, for
test_rfc_conformance5.py: ``/fields?h=NAME:VALUE&h=...&body=TEXT`` sends each ``h`` as given (in
order, duplicates kept) and then ``body`` in one ``http.response.body``. It shows what the gateway
does with the fields an app gets wrong."""

from __future__ import annotations

from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

Message = dict[str, Any]


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
    if scope["type"] != "http":
        return
    params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    headers = [tuple(value.encode("latin-1").split(b":", 1)) for key, value in params if key == "h"]
    body = "".join(value for key, value in params if key == "body").encode("latin-1")
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
