"""Unmodified Starlette, FastAPI and Django apps behind the worker (fake gateway, real socketpair)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("fastapi")
pytest.importorskip("django")

from gateway_fake import FakeGateway, run  # noqa: E402
from python_worker import protocol as P


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    async def home(request: Request) -> Any:
        return PlainTextResponse("Hello, world!")

    async def echo(request: Request) -> Any:
        body = await request.body()
        return PlainTextResponse(body, headers={"x-query": request.url.query})

    async def stream(request: Request) -> Any:
        async def gen() -> Any:
            for i in range(3):
                yield f"chunk{i};"
                await asyncio.sleep(0)

        return StreamingResponse(gen(), media_type="text/plain")

    async def info(request: Request) -> Any:
        return JSONResponse({"path": request.url.path, "client": list(request.client or ()), "method": request.method})

    async def boom(request: Request) -> Any:
        raise ValueError("boom")

    return Starlette(routes=[
        Route("/", home), Route("/echo", echo, methods=["POST"]), Route("/stream", stream),
        Route("/info", info), Route("/boom", boom),
    ])


def test_starlette(loop_name: str) -> None:
    app = starlette_app()

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1, path="/")
            r = await gw.response(1)
            assert r.status == 200 and r.body == b"Hello, world!" and r.outcome == P.OUTCOME_OK
            assert (b"content-length", b"13") in r.headers
            assert len([f for f in r.frames if f[0] != P.END]) == 1  # start + body coalesced

            gw.request(2, method="POST", path="/echo", query_string=b"q=1", body=b"abc", more_body=True)
            gw.body(2, b"def", False)
            r = await gw.response(2)
            assert r.body == b"abcdef" and (b"x-query", b"q=1") in r.headers

            gw.request(3, path="/stream")
            r = await gw.response(3)
            assert r.body == b"chunk0;chunk1;chunk2;" and r.outcome == P.OUTCOME_OK

            gw.request(4, path="/info")
            r = await gw.response(4)
            assert json.loads(r.body) == {"path": "/info", "client": ["127.0.0.1", 51234], "method": "GET"}

            gw.request(5, path="/nope")
            assert (await gw.response(5)).status == 404

            gw.request(6, path="/boom")
            r = await gw.response(6)
            assert r.status == 500 and r.outcome == P.OUTCOME_APP_ERROR and r.message == "ValueError: boom"

    run(loop_name, main())


def test_starlette_streaming_disconnect(loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def endless(request: Any) -> Any:
        async def gen() -> Any:
            while True:
                yield b"data\n"
                await asyncio.sleep(0.005)

        return StreamingResponse(gen())

    app = Starlette(routes=[Route("/", endless)])

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1)
            await gw.next_frame(1)
            await gw.next_frame(1)
            gw.disconnect(1)
            while (f := await gw.next_frame(1))[0] != P.END:
                pass
            assert f[2] == P.OUTCOME_OK

    run(loop_name, main())


try:
    from pydantic import BaseModel

    class Item(BaseModel):  # module level: the annotations are strings (``from __future__``)
        name: str
        price: float

except ImportError:  # pragma: no cover
    pass


def test_fastapi(loop_name: str) -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/items/{item_id}")
    async def create(item_id: int, item: Item) -> dict:
        return {"id": item_id, "name": item.name, "total": item.price * 2}

    @app.get("/")
    def sync_home() -> dict:
        return {"hello": "world"}

    async def main() -> None:
        async with FakeGateway(app) as gw:
            body = json.dumps({"name": "x", "price": 1.5}).encode()
            gw.request(1, method="POST", path="/items/7", headers=[(b"content-type", b"application/json")], body=body)
            r = await gw.response(1)
            assert r.status == 200, r.body
            assert json.loads(r.body) == {"id": 7, "name": "x", "total": 3.0}
            gw.request(2, path="/")
            r = await gw.response(2)
            assert json.loads(r.body) == {"hello": "world"}
            gw.request(3, method="POST", path="/items/x", headers=[(b"content-type", b"application/json")], body=b"{}")
            assert (await gw.response(3)).status == 422

    run(loop_name, main())


# Django: URLconf of this module.
def _django_view(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse(f"{request.method} {request.path} {request.body.decode()}", content_type="text/plain")


urlpatterns: list = []


def test_django(loop_name: str) -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False, ALLOWED_HOSTS=["*"], SECRET_KEY="test", ROOT_URLCONF=__name__, MIDDLEWARE=[],
            INSTALLED_APPS=[], DATABASES={},
        )
        django.setup()
    from django.core.asgi import get_asgi_application
    from django.urls import path

    urlpatterns[:] = [path("hello/", _django_view)]
    app = get_asgi_application()

    async def main() -> None:
        async with FakeGateway(app) as gw:
            gw.request(1, method="POST", path="/hello/", headers=[(b"host", b"example.com")], body=b"abc",
                       more_body=True)
            gw.body(1, b"def", False)
            r = await gw.response(1)
            assert r.status == 200 and r.body == b"POST /hello/ abcdef", r.body
            assert r.outcome == P.OUTCOME_OK
            gw.request(2, path="/missing/", headers=[(b"host", b"example.com")])
            r = await gw.response(2)
            assert r.status == 404 and r.outcome == P.OUTCOME_OK

    run(loop_name, main())
