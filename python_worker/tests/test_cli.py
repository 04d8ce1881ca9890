"""``python -m python_worker`` as a subprocess against a Unix socket the test listens on: app load
errors (message, HELLO error frame, exit status 3), unreachable socket, missing msgpack (exit 4), a
full session, SIGTERM draining, SIGINT ignored, protocol error."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from python_worker import protocol as P

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP_FILES = {
    "okapp.py": """
        CONST = 5

        async def app(scope, receive, send):
            if scope["path"] == "/slow":
                import asyncio
                await asyncio.sleep(0.5)
            body = b""
            while True:
                m = await receive()
                body += m.get("body", b"")
                if not m.get("more_body"):
                    break
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-path", scope["path"].encode())]})
            await send({"type": "http.response.body", "body": b"ok:" + body})

        def make():
            return app

        async def async_factory():
            return app

        def int_factory():
            return 5

        def bad_factory():
            raise RuntimeError("no")
    """,
    "boom.py": """
        def helper():
            raise ValueError("kaput")

        helper()
    """,
    "needsdep.py": """
        import missing_dep_xyz  # noqa

        app = None
    """,
    "syntaxerr.py": "def f(:\n",
}


@pytest.fixture
def appdir(tmp_path: Any) -> str:
    for name, text in APP_FILES.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return str(tmp_path)


@pytest.fixture
def server() -> Iterator[Tuple[socket.socket, str]]:
    d = tempfile.mkdtemp(prefix="pw", dir="/tmp")  # short: AF_UNIX paths are limited to ~107 bytes
    path = os.path.join(d, "gw.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(4)
    s.settimeout(20)
    try:
        yield s, path
    finally:
        s.close()
        shutil.rmtree(d, ignore_errors=True)


def env(extra_path: Optional[str] = None) -> Dict[str, str]:
    e = dict(os.environ)
    parts = [p for p in (extra_path, PROJECT_DIR, e.get("PYTHONPATH")) if p]
    e["PYTHONPATH"] = os.pathsep.join(parts)
    return e


def spawn(sock_path: str, *args: str, cwd: str, extra_path: Optional[str] = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "python_worker", "--socket", sock_path, *args],
        cwd=cwd, env=env(extra_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def read_frame(conn: socket.socket) -> tuple:
    n = int.from_bytes(recv_exact(conn, 4), "big")
    return P.decode(recv_exact(conn, n))


def read_response(conn: socket.socket, sid: int) -> List[tuple]:
    frames = []
    while True:
        f = read_frame(conn)
        assert f[1] == sid, f
        frames.append(f)
        if f[0] == P.END:
            return frames


def gateway_hello(conn: socket.socket, window: int = P.DEFAULT_WINDOW) -> None:
    conn.sendall(P.encode([P.HELLO, 0, {"protocol": 1, "pid": os.getpid(), "max_frame": P.DEFAULT_MAX_FRAME,
                                        "window": window, "worker_id": 3}]))


def request(sid: int, path: str = "/", body: bytes = b"") -> bytes:
    return P.encode([P.HTTP_REQUEST, sid, "1.1", "GET", "http", path, path.encode(), b"", "", [],
                     None, ["/tmp/gw.sock", None], 0, body, False])


def finish(proc: subprocess.Popen, timeout: float = 15) -> Tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


LOAD_ERRORS = [
    (["--app", "okapp"], 'Import string "okapp" must be in format "<module>:<attribute>".', False),
    (["--app", "okapp:"], 'Import string "okapp:" must be in format "<module>:<attribute>".', False),
    (["--app", "nope_mod_xyz:app"], 'Could not import module "nope_mod_xyz".', False),
    (["--app", "nopepkg_xyz.sub:app"], 'Could not import module "nopepkg_xyz.sub".', False),
    (["--app", "needsdep:app"],
     'Could not import module "needsdep": it imports "missing_dep_xyz", which was not found '
     "(ModuleNotFoundError: No module named 'missing_dep_xyz').", True),
    (["--app", "okapp:nope"], 'Attribute "nope" not found in module "okapp".', False),
    (["--app", "okapp:app.x.y"], 'Attribute "app.x.y" not found in module "okapp".', False),
    (["--app", "boom:app"], "ValueError: kaput", True),
    (["--app", "syntaxerr:app"], "SyntaxError: invalid syntax (syntaxerr.py, line 1)", True),
    (["--app", "okapp:bad_factory", "--factory"], 'Error calling the app factory "okapp:bad_factory": RuntimeError: no', True),
    (["--app", "okapp:CONST"], 'The ASGI app "okapp:CONST" is not callable (it is a int).', False),
    (["--app", "okapp:async_factory", "--factory"],
     'The app factory "okapp:async_factory" is async: it must be a plain function that returns the app.', False),
    (["--app", "okapp:int_factory", "--factory"],
     'The app factory "okapp:int_factory" returned a int, which is not an ASGI app (not callable).', False),
]


@pytest.mark.parametrize("args, message, traceback", LOAD_ERRORS, ids=[a[0][1] + (" factory" if len(a[0]) > 2 else "") for a in LOAD_ERRORS])
def test_load_error(server: Tuple[socket.socket, str], appdir: str, args: List[str], message: str, traceback: bool) -> None:
    s, path = server
    proc = spawn(path, *args, "--app-dir", appdir, cwd="/")
    conn, _ = s.accept()
    with conn:
        conn.settimeout(10)
        gateway_hello(conn)
        f = read_frame(conn)
        assert f == (P.W_HELLO, 0, {"protocol": 1, "pid": proc.pid, "error": message})
        conn.close()
    code, out, err = finish(proc)
    assert code == 3, err
    assert message in err
    assert ("Traceback (most recent call last)" in err) == traceback, err
    if "kaput" in message:
        assert 'raise ValueError("kaput")' in err
    if message == 'Could not import module "nope_mod_xyz".':
        assert "(ModuleNotFoundError: No module named 'nope_mod_xyz')" in err  # the log line names it


def test_load_error_and_no_socket(tmp_path: Any, appdir: str) -> None:
    proc = spawn(str(tmp_path / "missing.sock"), "--app", "nope_mod_xyz:app", "--app-dir", appdir, cwd="/")
    code, out, err = finish(proc)
    assert code == 3
    assert 'Could not import module "nope_mod_xyz".' in err
    assert "cannot connect to the gateway socket" in err


def test_socket_unreachable(tmp_path: Any, appdir: str) -> None:
    proc = spawn(str(tmp_path / "missing.sock"), "--app", "okapp:app", "--app-dir", appdir, cwd="/")
    code, out, err = finish(proc)
    assert code == 3
    assert "cannot connect to the gateway socket" in err and "missing.sock" in err


def test_msgpack_missing(tmp_path: Any, appdir: str) -> None:
    blocker = tmp_path / "block"
    (blocker / "msgpack").mkdir(parents=True)
    (blocker / "msgpack" / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    proc = spawn(str(tmp_path / "x.sock"), "--app", "okapp:app", cwd=appdir, extra_path=str(blocker))
    code, out, err = finish(proc)
    assert code == 4
    assert err == (
        f"asgi-gateway worker: the Python package 'msgpack' is not installed in {sys.executable} "
        "(pip install msgpack)\n"
    )


@pytest.mark.parametrize("factory", [False, True])
def test_session(server: Tuple[socket.socket, str], appdir: str, factory: bool) -> None:
    s, path = server
    args = ["--app", "okapp:make", "--factory"] if factory else ["--app", "okapp:app"]
    # no --app-dir: the current directory is used
    proc = spawn(path, *args, "--worker-id", "3", "--log-level", "debug", cwd=appdir)
    conn, _ = s.accept()
    with conn:
        conn.settimeout(10)
        f = read_frame(conn)
        assert f == (P.W_HELLO, 0, {"protocol": 1, "pid": proc.pid, "python": platform.python_version(), "features": ("small-window",)})
        gateway_hello(conn)
        conn.sendall(request(1, "/a", b"xyz") + request(2, "/b"))
        frames = [read_frame(conn) for _ in range(4)]
        by_sid: Dict[int, List[tuple]] = {}
        for fr in frames:
            by_sid.setdefault(fr[1], []).append(fr)
        assert by_sid[1] == [(P.RESPONSE_START, 1, 200, ((b"x-path", b"/a"),), 0, b"ok:xyz", False), (P.END, 1, 0, "")]
        assert by_sid[2][1] == (P.END, 2, 0, "")
        conn.sendall(P.encode([P.PING, 0, 99]))
        assert read_frame(conn) == (P.PONG, 0, 99)
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(10) == b""
    code, out, err = finish(proc)
    assert code == 0, err
    assert "INFO [python_worker.worker] serving okapp:" in err
    assert "Exception" not in err


def test_sigterm_drains_running_requests(server: Tuple[socket.socket, str], appdir: str) -> None:
    s, path = server
    proc = spawn(path, "--app", "okapp:app", "--app-dir", appdir, cwd="/")
    conn, _ = s.accept()
    with conn:
        conn.settimeout(10)
        read_frame(conn)
        gateway_hello(conn)
        conn.sendall(request(1, "/slow"))
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # ignored
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        conn.sendall(request(2, "/late"))
        frames = [read_frame(conn), read_frame(conn), read_frame(conn)]
        assert (P.END, 2, P.OUTCOME_APP_ERROR, "the worker is shutting down") in frames
        assert (P.END, 1, P.OUTCOME_OK, "") in frames
        assert [f for f in frames if f[0] == P.RESPONSE_START][0][5] == b"ok:"
        assert conn.recv(10) == b""  # the worker closed the connection
    code, out, err = finish(proc)
    assert code == 0, err


def test_sigint_is_ignored(server: Tuple[socket.socket, str], appdir: str) -> None:
    s, path = server
    proc = spawn(path, "--app", "okapp:app", "--app-dir", appdir, cwd="/")
    conn, _ = s.accept()
    with conn:
        conn.settimeout(10)
        read_frame(conn)
        gateway_hello(conn)
        conn.sendall(P.encode([P.PING, 0, 1]))
        assert read_frame(conn) == (P.PONG, 0, 1)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        conn.sendall(P.encode([P.PING, 0, 2]))
        assert read_frame(conn) == (P.PONG, 0, 2)
    code, out, err = finish(proc)
    assert code == 0, err


def test_protocol_error_exits_1(server: Tuple[socket.socket, str], appdir: str) -> None:
    s, path = server
    proc = spawn(path, "--app", "okapp:app", "--app-dir", appdir, cwd="/")
    conn, _ = s.accept()
    with conn:
        conn.settimeout(10)
        read_frame(conn)
        gateway_hello(conn)
        conn.sendall((P.DEFAULT_MAX_FRAME + 1).to_bytes(4, "big"))
        assert conn.recv(10) == b""
    code, out, err = finish(proc)
    assert code == 1
    assert "protocol error: frame length 1048577 is outside 1..1048576" in err


def test_gateway_with_other_protocol(server: Tuple[socket.socket, str], appdir: str) -> None:
    s, path = server
    proc = spawn(path, "--app", "okapp:app", "--app-dir", appdir, cwd="/")
    conn, _ = s.accept()
    with conn:
        conn.settimeout(10)
        read_frame(conn)
        conn.sendall(P.encode([P.HELLO, 0, {"protocol": 2, "pid": 1}]))
        assert conn.recv(10) == b""
    code, out, err = finish(proc)
    assert code == 1
    assert "protocol version 2" in err
