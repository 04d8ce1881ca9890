"""The example apps of examples/, served by the real binary."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import httpx
import pytest

from gateway_harness import EXAMPLES_DIR, GatewayServer


# --- Starlette ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def starlette(module_servers: Any) -> GatewayServer:
    return module_servers.start("starlette_app:app", app_dir=EXAMPLES_DIR)


def test_starlette_hello(starlette: GatewayServer) -> None:
    response = httpx.get(f"{starlette.url}/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "Hello, world!\n"


def test_starlette_json(starlette: GatewayServer) -> None:
    response = httpx.get(f"{starlette.url}/json?name=ada")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": "Hello, world!", "method": "GET", "path": "/json", "query": {"name": "ada"}}


def test_starlette_form_page(starlette: GatewayServer) -> None:
    response = httpx.get(f"{starlette.url}/form")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/form">' in response.text


def test_starlette_form_urlencoded(starlette: GatewayServer) -> None:
    response = httpx.post(f"{starlette.url}/form", data={"name": "Ada Lovelace", "lang": ["python", "go"]})
    assert response.status_code == 200
    assert response.json() == {"name": "Ada Lovelace", "lang": ["python", "go"]}


def test_starlette_form_multipart(starlette: GatewayServer) -> None:
    response = httpx.post(
        f"{starlette.url}/form", data={"name": "Ada"}, files={"attachment": ("notes.txt", b"some notes")}
    )
    assert response.status_code == 200
    assert response.json() == {"name": "Ada", "attachment": "notes.txt"}


def test_starlette_upload(starlette: GatewayServer) -> None:
    content = os.urandom(3 * 1024 * 1024 + 7)
    response = httpx.post(
        f"{starlette.url}/upload", files={"file": ("data.bin", content, "application/octet-stream")}, timeout=30
    )
    assert response.status_code == 200
    assert response.json() == {
        "filename": "data.bin",
        "content_type": "application/octet-stream",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def test_starlette_upload_without_file_is_400(starlette: GatewayServer) -> None:
    response = httpx.post(f"{starlette.url}/upload", data={"other": "x"})
    assert response.status_code == 400


def test_starlette_stream(starlette: GatewayServer) -> None:
    arrivals: list[float] = []
    lines: list[str] = []
    started = time.monotonic()
    with httpx.stream("GET", f"{starlette.url}/stream?lines=3&delay=0.5") as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
            arrivals.append(time.monotonic() - started)
    assert lines == ["line 1", "line 2", "line 3"]
    assert arrivals[0] < 0.4, arrivals  # the first line did not wait for the next one
    assert arrivals[-1] >= 0.95, arrivals


def test_starlette_echo(starlette: GatewayServer) -> None:
    body = os.urandom(100_000)
    response = httpx.post(f"{starlette.url}/echo", content=body, headers={"content-type": "application/x-test"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-test"
    assert response.content == body


def test_starlette_echo_chunked_request(starlette: GatewayServer) -> None:
    pieces = [b"alpha ", b"beta ", b"gamma"]
    response = httpx.post(f"{starlette.url}/echo", content=iter(pieces))
    assert response.status_code == 200
    assert response.content == b"alpha beta gamma"


def test_starlette_not_found_and_method_not_allowed(starlette: GatewayServer) -> None:
    assert httpx.get(f"{starlette.url}/nope").status_code == 404
    assert httpx.get(f"{starlette.url}/upload").status_code == 405


# --- FastAPI -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fastapi(module_servers: Any) -> GatewayServer:
    return module_servers.start("fastapi_app:app", app_dir=EXAMPLES_DIR)


def test_fastapi_get_item(fastapi: GatewayServer) -> None:
    response = httpx.get(f"{fastapi.url}/items/1", params={"q": "blue"})
    assert response.status_code == 200
    assert response.json() == {"item": {"name": "Teapot", "price": 18.0, "tags": ["kitchen"], "id": 1}, "q": "blue"}
    assert httpx.get(f"{fastapi.url}/items/999").status_code == 404


def test_fastapi_path_param_validation(fastapi: GatewayServer) -> None:
    response = httpx.get(f"{fastapi.url}/items/not-a-number")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "item_id"]


def test_fastapi_post_item(fastapi: GatewayServer) -> None:
    response = httpx.post(f"{fastapi.url}/items", json={"name": "Lamp", "price": 12.5, "tags": ["light"]})
    assert response.status_code == 201
    created = response.json()
    assert created["name"] == "Lamp" and created["price"] == 12.5 and created["tags"] == ["light"]
    assert httpx.get(f"{fastapi.url}/items/{created['id']}").json()["item"] == created


def test_fastapi_post_validation_error_is_422(fastapi: GatewayServer) -> None:
    response = httpx.post(f"{fastapi.url}/items", json={"name": "", "price": -1})
    assert response.status_code == 422
    locations = [error["loc"] for error in response.json()["detail"]]
    assert ["body", "name"] in locations and ["body", "price"] in locations


def test_fastapi_dependency(fastapi: GatewayServer) -> None:
    response = httpx.get(f"{fastapi.url}/items", params={"offset": 0, "limit": 1})
    assert response.status_code == 200
    assert [item["id"] for item in response.json()] == [1]
    assert httpx.get(f"{fastapi.url}/items", params={"limit": 0}).status_code == 422


def test_fastapi_openapi(fastapi: GatewayServer) -> None:
    response = httpx.get(f"{fastapi.url}/openapi.json")
    assert response.status_code == 200
    assert "/items/{item_id}" in response.json()["paths"]


# --- Django ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def django(module_servers: Any) -> GatewayServer:
    return module_servers.start("mysite.asgi:application", app_dir=EXAMPLES_DIR / "django_project")


def test_django_hello(django: GatewayServer) -> None:
    response = httpx.get(f"{django.url}/hello/", params={"name": "ada"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": "Hello from Django", "method": "GET", "path": "/hello/", "query": {"name": "ada"}}


def test_django_admin_login_page(django: GatewayServer) -> None:
    response = httpx.get(f"{django.url}/admin/login/")
    assert response.status_code == 200
    assert "csrfmiddlewaretoken" in response.text
    assert 'name="username"' in response.text and 'name="password"' in response.text
    assert "csrftoken" in response.cookies


def test_django_admin_redirects_to_login(django: GatewayServer) -> None:
    response = httpx.get(f"{django.url}/admin/")
    assert response.status_code == 302
    assert response.headers["location"] == "/admin/login/?next=/admin/"


def test_django_append_slash_redirect(django: GatewayServer) -> None:
    response = httpx.get(f"{django.url}/hello")
    assert response.status_code == 301
    assert response.headers["location"] == "/hello/"
