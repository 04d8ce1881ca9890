"""A small Starlette app served by asgi-gateway.

Run it from the repository root:

    bin/asgi-gateway run starlette_app:app --app-dir examples

Then try:

    curl http://127.0.0.1:8000/
    curl http://127.0.0.1:8000/json
    curl -d 'name=Ada&lang=python' http://127.0.0.1:8000/form
    curl -F 'file=@README.md' http://127.0.0.1:8000/upload
    curl -N 'http://127.0.0.1:8000/stream?lines=5'
    curl --data-binary @README.md http://127.0.0.1:8000/echo
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

FORM_PAGE = """\
<!doctype html>
<html>
  <head><title>asgi-gateway form</title></head>
  <body>
    <form method="post" action="/form">
      <label>Name <input name="name"></label>
      <label>Language <input name="lang"></label>
      <button type="submit">Send</button>
    </form>
    <form method="post" action="/upload" enctype="multipart/form-data">
      <input type="file" name="file">
      <button type="submit">Upload</button>
    </form>
  </body>
</html>
"""


async def homepage(request: Request) -> Response:
    return PlainTextResponse("Hello, world!\n")


async def json_endpoint(request: Request) -> Response:
    return JSONResponse(
        {
            "message": "Hello, world!",
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
        }
    )


async def form(request: Request) -> Response:
    if request.method == "GET":
        return HTMLResponse(FORM_PAGE)
    # Works for both application/x-www-form-urlencoded and multipart/form-data.
    async with request.form() as data:
        fields: dict[str, str | list[str]] = {}
        for key in data.keys():
            values = [
                value.filename or "" if isinstance(value, UploadFile) else value
                for value in data.getlist(key)
            ]
            fields[key] = values[0] if len(values) == 1 else values
    return JSONResponse(fields)


async def upload(request: Request) -> Response:
    async with request.form() as data:
        file = data.get("file")
        if not isinstance(file, UploadFile):
            return JSONResponse({"error": "send a multipart field named 'file'"}, status_code=400)
        digest = hashlib.sha256()
        size = 0
        while chunk := await file.read(64 * 1024):
            digest.update(chunk)
            size += len(chunk)
        return JSONResponse(
            {
                "filename": file.filename,
                "content_type": file.content_type,
                "size": size,
                "sha256": digest.hexdigest(),
            }
        )


async def stream(request: Request) -> Response:
    lines = min(int(request.query_params.get("lines", "10")), 1000)
    delay = min(float(request.query_params.get("delay", "0.1")), 5.0)

    async def generate() -> AsyncIterator[str]:
        for number in range(1, lines + 1):
            yield f"line {number}\n"
            await asyncio.sleep(delay)

    return StreamingResponse(generate(), media_type="text/plain")


class Echo:
    """POST /echo: the request body streamed back as it arrives, piece by piece, never held in
    memory as a whole. A plain ASGI app in a route: Starlette's StreamingResponse watches receive()
    for the client's disconnect while it streams (under the HTTP spec_version 2.3 that asgi-gateway
    and uvicorn announce), so it cannot read the request body from receive() at the same time."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        media_type = headers.get(b"content-type", b"application/octet-stream")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", media_type)]})
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if body or not more:
                await send({"type": "http.response.body", "body": body, "more_body": more})
            if not more:
                return


echo = Echo()


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/json", json_endpoint),
        Route("/form", form, methods=["GET", "POST"]),
        Route("/upload", upload, methods=["POST"]),
        Route("/stream", stream),
        Route("/echo", echo, methods=["POST"]),
    ]
)
