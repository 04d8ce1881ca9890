"""The lifespan protocol: startup/shutdown, modes, state into request scopes, failures as HELLO errors."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from typing import Any, List

import pytest

from gateway_fake import FakeGateway, run
from python_worker import protocol as P
from python_worker.lifespan import Lifespan


def lifespan_app(events: List[str], fail: str = "") -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                events.append(m["type"])
                if m["type"] == "lifespan.startup":
                    if fail == "startup":
                        await send({"type": "lifespan.startup.failed", "message": "no database"})
                        return
                    if fail == "raise":
                        raise RuntimeError("kaboom")
                    scope["state"]["db"] = "connected"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        else:
            scope["state"]["touched"] = True  # a copy: not seen by other requests
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": repr(sorted(scope["state"].items())).encode()})

    return app


def test_startup_shutdown_and_state(loop_name: str) -> None:
    events: List[str] = []

    async def main() -> None:
        ls = Lifespan(lifespan_app(events), "on")
        assert await ls.startup() is None
        assert ls.state == {"db": "connected"}
        async with FakeGateway(lifespan_app(events)) as gw:
            gw.conn.state = ls.state
            for sid in (1, 2):
                gw.request(sid)
                r = await gw.response(sid)
                assert r.body == b"[('db', 'connected'), ('touched', True)]"
        assert ls.state == {"db": "connected"}
        await ls.shutdown()
        await ls.shutdown()  # once

    run(loop_name, main())
    assert events == ["lifespan.startup", "lifespan.shutdown"]


@pytest.mark.parametrize(
    "mode, fail, expected",
    [
        ("on", "startup", "Application startup failed: no database"),
        ("auto", "startup", "Application startup failed: no database"),
        ("on", "raise", "Application startup failed: RuntimeError: kaboom"),
        ("auto", "raise", None),  # unsupported: go on without lifespan
        ("off", "raise", None),
    ],
)
def test_startup_failures(loop_name: str, mode: str, fail: str, expected: Any, caplog: pytest.LogCaptureFixture) -> None:
    events: List[str] = []

    async def main() -> Any:
        ls = Lifespan(lifespan_app(events, fail), mode)
        result = await ls.startup()
        await ls.shutdown()
        return result

    with caplog.at_level(logging.INFO):
        assert run(loop_name, main()) == expected
    if mode == "auto" and fail == "raise":
        assert "ASGI 'lifespan' protocol appears unsupported." in caplog.text
    if mode == "off":
        assert events == []


def test_app_without_lifespan_support(loop_name: str) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"

    async def main() -> Any:
        ls = Lifespan(app, "auto")
        assert await ls.startup() is None
        await ls.shutdown()
        return ls.state

    assert run(loop_name, main()) == {}


APP = """
import os

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                if os.environ.get("FAIL_STARTUP"):
                    await send({"type": "lifespan.startup.failed", "message": "no database"})
                    return
                scope["state"]["started"] = "yes"
                await send({"type": "lifespan.startup.complete"})
            else:
                with open(os.environ["MARKER"], "w") as f:
                    f.write("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200})
    await send({"type": "http.response.body", "body": scope["state"]["started"].encode()})
"""


@pytest.mark.parametrize("how", ["close", "shutdown-frame"])
def test_worker_process_lifespan(tmp_path: Any, how: str) -> None:
    from test_cli import env, read_frame

    (tmp_path / "lsapp.py").write_text(textwrap.dedent(APP))
    d = tempfile.mkdtemp(prefix="pwl", dir="/tmp")
    path = os.path.join(d, "gw.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    s.settimeout(20)
    marker = tmp_path / "marker"
    e = env()
    e["MARKER"] = str(marker)
    proc = subprocess.Popen([sys.executable, "-m", "python_worker", "--socket", path, "--app", "lsapp:app",
                             "--lifespan", "on"], cwd=str(tmp_path), env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        conn, _ = s.accept()
        with conn:
            conn.settimeout(10)
            assert read_frame(conn)[0] == P.W_HELLO
            conn.sendall(P.encode([P.HELLO, 0, {"protocol": 1, "pid": 1}]))
            conn.sendall(P.encode([P.HTTP_REQUEST, 1, "1.1", "GET", "http", "/", b"/", b"", "", [], None, None, 0,
                                   b"", False]))
            assert read_frame(conn) == (P.RESPONSE_START, 1, 200, (), 0, b"yes", False)
            assert read_frame(conn) == (P.END, 1, 0, "")
            if how == "close":
                conn.shutdown(socket.SHUT_WR)
            else:
                conn.sendall(P.encode([P.SHUTDOWN, 0, 1000]))
            assert conn.recv(10) == b""
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert marker.read_text() == "shutdown"
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)
        if proc.poll() is None:
            proc.kill()


def test_worker_process_startup_failed(tmp_path: Any) -> None:
    from test_cli import env, read_frame

    (tmp_path / "lsapp.py").write_text(textwrap.dedent(APP))
    d = tempfile.mkdtemp(prefix="pwl", dir="/tmp")
    path = os.path.join(d, "gw.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    s.settimeout(20)
    e = env()
    e["FAIL_STARTUP"] = "1"
    e["MARKER"] = str(tmp_path / "m")
    proc = subprocess.Popen([sys.executable, "-m", "python_worker", "--socket", path, "--app", "lsapp:app"],
                            cwd=str(tmp_path), env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        conn, _ = s.accept()
        with conn:
            conn.settimeout(10)
            f = read_frame(conn)
            assert f == (P.W_HELLO, 0, {"protocol": 1, "pid": proc.pid,
                                        "error": "Application startup failed: no database"})
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 3
        assert "Application startup failed: no database" in err
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)
        if proc.poll() is None:
            proc.kill()
