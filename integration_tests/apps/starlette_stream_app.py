"""A Starlette streaming endpoint whose generator waits for events that may never come (a pub/sub
stream): ``/events`` yields one event, then waits. ``/open`` lists the streams whose generator has
not been closed yet, so a test can tell that a client's leaving reached the generator."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

OPEN: set[str] = set()


async def events(request: Request) -> StreamingResponse:
    name = request.query_params.get("name", "?")

    async def stream() -> AsyncIterator[bytes]:
        OPEN.add(name)
        try:
            yield b"data: hello\n\n"
            await asyncio.Event().wait()  # no further event, ever
        finally:
            OPEN.discard(name)

    return StreamingResponse(stream(), media_type="text/event-stream")


async def open_streams(request: Request) -> JSONResponse:
    return JSONResponse(sorted(OPEN))


app = Starlette(routes=[Route("/events", events), Route("/open", open_streams)])
