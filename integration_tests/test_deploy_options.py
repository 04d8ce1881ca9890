"""Deployment surface: the command-line options that choose where the gateway listens, how many workers
it runs and what they import, from options, from the environment (ASGI_GATEWAY_<NAME>, UVICORN_<NAME>,
WEB_CONCURRENCY) and from a --config TOML file; and uvicorn's engine flags.

README: "Precedence: option > environment > config file > default."
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

import httpx
import pytest

from gateway_harness import APPS_DIR, BINARY, REPO_ROOT, START_TIMEOUT, RawConnection, venv_python

# "listening on http://127.0.0.1:PORT", "https://...", "unix:PATH" or "fd:N (127.0.0.1:PORT)"; in a
# JSON log line the address is followed by a quote, in a coloured one by an escape sequence.
LISTENING = re.compile(r'listening on ((?:https?://|unix:)[^\s"\x1b]+|fd:\d+ \([^)"\x1b]*\))')
PIDS = re.compile(r"pids=(?:\x1b\[0m)?\[([\d ,]*)\]")
# Variables that would change the gateway's options behind a test's back.
OPTION_ENV = re.compile(r"^(ASGI_GATEWAY_|UVICORN_)|^(WEB_CONCURRENCY|FORWARDED_ALLOW_IPS|VIRTUAL_ENV)$")


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not OPTION_ENV.search(key)}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_pids(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children.update(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return children


@dataclass
class Launched:
    """One `asgi-gateway run ...` started with exactly the given arguments and environment."""

    process: subprocess.Popen[bytes]
    log_path: Path
    command: list[str]
    where: str = ""
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def url(self) -> str:
        match = re.fullmatch(r"fd:\d+ \((.*)\)", self.where)
        return f"http://{match.group(1)}" if match else self.where

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def pids(self) -> list[int]:
        match = PIDS.search(self.log())
        assert match, f"no pids=[...] in the log:\n{self.log()}"
        return [int(p) for p in re.split(r"[ ,]+", match.group(1).strip()) if p]

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.process.returncode


class Launcher:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.launched: list[Launched] = []

    def command(self, args: Sequence[str], python: bool = True) -> list[str]:
        command = [str(BINARY), "run", *args]
        if python:
            command += ["--python", venv_python()]
        return command

    def start(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        pass_fds: Sequence[int] = (),
        cwd: Path = REPO_ROOT,
        python: bool = True,
        wait: bool = True,
    ) -> Launched:
        """Starts `asgi-gateway run ARGS... --python VENV` and waits for its "listening on" line."""
        command = self.command(args, python)
        log_path = self.directory / f"launched-{len(self.launched)}.log"
        log_file = open(log_path, "wb")
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=env if env is not None else clean_env(),
            pass_fds=pass_fds,
        )
        launched = Launched(process, log_path, command, _log_file=log_file)
        self.launched.append(launched)
        if not wait:
            return launched
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            match = LISTENING.search(launched.log())
            if match:
                launched.where = match.group(1)
                return launched
            if process.poll() is not None:
                pytest.fail(
                    f"asgi-gateway exited with {process.returncode} before listening\n"
                    f"command: {command}\nlog:\n{launched.log()}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                launched.stop()
                pytest.fail(f"no 'listening on' within {START_TIMEOUT} s\ncommand: {command}\nlog:\n{launched.log()}")
            time.sleep(0.05)

    def start_unwatched(self, *args: str, **kwargs: Any) -> Launched:
        """Starts without waiting for "listening on" (at --log-level warning it is not logged)."""
        return self.start(*args, wait=False, **kwargs)

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        """Runs a command line that is expected to exit by itself (a refused configuration)."""
        return subprocess.run(
            self.command(args),
            cwd=REPO_ROOT,
            env=env if env is not None else clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stop_all(self) -> None:
        for launched in self.launched:
            launched.stop()


@pytest.fixture
def launcher(gateway_binary: None, tmp_path: Path) -> Iterator[Launcher]:
    pool = Launcher(tmp_path)
    yield pool
    pool.stop_all()


def get(url: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", 10)
    with httpx.Client(trust_env=False, timeout=kwargs.pop("timeout")) as client:
        return client.get(url, **kwargs)


APP = ("testapp:app", "--app-dir", str(APPS_DIR))


# --- --host, --port ---------------------------------------------------------------------------


def test_port_0_picks_a_free_port_and_prints_it(launcher: Launcher) -> None:
    server = launcher.start(*APP, "--host", "127.0.0.1", "--port", "0")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url), server.where
    assert server.port != 0
    scope = get(f"{server.url}/port-zero").json()["scope"]
    assert scope["server"] == ["127.0.0.1", server.port]


def test_host_and_port(launcher: Launcher) -> None:
    port = free_port()
    server = launcher.start(*APP, "--host", "127.0.0.1", "--port", str(port))
    assert server.url == f"http://127.0.0.1:{port}"
    assert get(f"http://127.0.0.1:{port}/explicit").json()["scope"]["server"] == ["127.0.0.1", port]


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_host_ipv6(launcher: Launcher) -> None:
    server = launcher.start(*APP, "--host", "::1", "--port", "0")
    port = server.port
    data = get(f"http://[::1]:{port}/v6").json()["scope"]
    assert data["server"] == ["::1", port]
    assert data["client"][0] == "::1"


def test_host_all_interfaces_accepts_loopback(launcher: Launcher) -> None:
    server = launcher.start(*APP, "--host", "0.0.0.0", "--port", "0")
    response = get(f"http://127.0.0.1:{server.port}/any")
    assert response.status_code == 200


# --- --uds, --fd, --backlog -------------------------------------------------------------------


def test_uds(launcher: Launcher, short_tmp: Path) -> None:
    path = str(short_tmp / "deploy.sock")
    server = launcher.start(*APP, "--uds", path)
    assert server.where == f"unix:{path}"
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), base_url="http://gw.local", trust_env=False) as client:
        scope = client.get("/uds").json()["scope"]
    assert scope["server"] == [path, None]  # README: `server` in the scope is [PATH, None]


@pytest.mark.parametrize("listening", [True, False], ids=["listening-socket", "bound-socket"])
def test_fd_inherited_socket(launcher: Launcher, listening: bool) -> None:
    # systemd-style socket activation passes a listening socket; uvicorn's --fd also takes a socket
    # that is only bound (it calls listen() itself, through asyncio's create_server).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    if listening:
        sock.listen(16)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    try:
        server = launcher.start(*APP, "--fd", str(fd), pass_fds=[fd])
    finally:
        sock.close()  # the gateway holds its own copy
    assert server.where.startswith(f"fd:{fd} "), server.where
    assert server.port == port
    response = get(f"http://127.0.0.1:{port}/from-fd", timeout=5)
    assert response.status_code == 200
    assert response.json()["scope"]["server"] == ["127.0.0.1", port]


def test_fd_that_is_not_a_socket_is_refused(launcher: Launcher) -> None:
    result = launcher.run(*APP, "--fd", "0")
    assert result.returncode != 0
    assert "file descriptor 0" in result.stderr, result.stderr
    assert "panic" not in result.stderr


@pytest.mark.parametrize("backlog", ["1", "16", "4096"])
def test_backlog_is_accepted(launcher: Launcher, backlog: str) -> None:
    server = launcher.start(*APP, "--port", "0", "--backlog", backlog)
    assert get(f"{server.url}/backlog").status_code == 200


# --- --workers, WEB_CONCURRENCY ---------------------------------------------------------------


def assert_workers(server: Launched, count: int) -> None:
    pids = server.pids()
    assert len(pids) == count, f"pids {pids} in the log, expected {count} workers:\n{server.log()}"
    assert set(pids) == child_pids(server.process.pid), "the logged pids are not the gateway's children"
    served = {int(get(f"{server.url}/_/pid").text) for _ in range(4 * count)}
    assert served <= set(pids), f"requests served by {served}, workers are {pids}"


def test_workers(launcher: Launcher) -> None:
    server = launcher.start(*APP, "--port", "0", "--workers", "3")
    assert_workers(server, 3)


def test_workers_default_is_one(launcher: Launcher) -> None:
    server = launcher.start(*APP, "--port", "0")
    assert_workers(server, 1)


def test_web_concurrency_sets_the_workers(launcher: Launcher) -> None:
    server = launcher.start(*APP, "--port", "0", env=clean_env(WEB_CONCURRENCY="2"))
    assert_workers(server, 2)


def test_workers_option_beats_web_concurrency(launcher: Launcher) -> None:
    server = launcher.start(*APP, "--port", "0", "--workers", "1", env=clean_env(WEB_CONCURRENCY="3"))
    assert_workers(server, 1)


# --- environment variables --------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["ASGI_GATEWAY_PORT", "UVICORN_PORT"])
def test_port_from_the_environment(launcher: Launcher, variable: str) -> None:
    port = free_port()
    server = launcher.start(*APP, env=clean_env(**{variable: str(port)}))
    assert server.port == port
    assert get(f"http://127.0.0.1:{port}/env-port").status_code == 200


@pytest.mark.parametrize("prefix", ["ASGI_GATEWAY_", "UVICORN_"])
def test_other_options_from_the_environment(launcher: Launcher, prefix: str) -> None:
    # A string, an int and a boolean option, each through the environment.
    env = clean_env(
        **{f"{prefix}PORT": "0", f"{prefix}ROOT_PATH": "/envroot", f"{prefix}WORKERS": "2",
           f"{prefix}NO_SERVER_HEADER": "true"}
    )
    server = launcher.start(*APP, env=env)
    response = get(f"{server.url}/x")
    assert response.json()["scope"]["root_path"] == "/envroot"
    assert "server" not in response.headers
    assert len(server.pids()) == 2


def test_option_beats_environment(launcher: Launcher) -> None:
    flag_port, env_port = free_port(), free_port()
    server = launcher.start(*APP, "--port", str(flag_port), env=clean_env(ASGI_GATEWAY_PORT=str(env_port)))
    assert server.port == flag_port


# --- --config FILE ----------------------------------------------------------------------------


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"gateway-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(text)
    return path


def config_text(port: int, workers: int, **more: str) -> str:
    lines = [f"port = {port}", f"workers = {workers}", 'app = "testapp:app"', f'app-dir = "{APPS_DIR}"']
    lines += [f"{key} = {value}" for key, value in more.items()]
    return "\n".join(lines) + "\n"


def test_config_file_supplies_the_options_and_the_app(launcher: Launcher, tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, config_text(port, 2, **{'"root-path"': '"/cfg"', '"no-date-header"': "true"}))
    server = launcher.start("--config", str(config))  # no APP argument: it comes from the file
    assert server.port == port
    assert len(server.pids()) == 2
    response = get(f"{server.url}/from-config")
    assert response.json()["scope"]["root_path"] == "/cfg"
    assert "date" not in response.headers


def test_environment_beats_config_file(launcher: Launcher, tmp_path: Path) -> None:
    file_port, env_port = free_port(), free_port()
    config = write_config(tmp_path, config_text(file_port, 3))
    env = clean_env(UVICORN_PORT=str(env_port), WEB_CONCURRENCY="2")
    server = launcher.start("--config", str(config), env=env)
    assert server.port == env_port
    assert len(server.pids()) == 2


def test_option_beats_environment_beats_config_file(launcher: Launcher, tmp_path: Path) -> None:
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    config = write_config(tmp_path, config_text(file_port, 3))
    env = clean_env(ASGI_GATEWAY_PORT=str(env_port), ASGI_GATEWAY_WORKERS="2")
    server = launcher.start("--config", str(config), "--port", str(flag_port), "--workers", "1", env=env)
    assert server.port == flag_port
    assert len(server.pids()) == 1


def test_app_argument_beats_config_file(launcher: Launcher, tmp_path: Path) -> None:
    config = write_config(tmp_path, 'app = "no_such_module_xyz:app"\nport = 0\n')
    server = launcher.start("testapp:create_app", "--factory", "--app-dir", str(APPS_DIR), "--config", str(config))
    assert get(f"{server.url}/arg-wins").status_code == 200


def test_config_file_beats_default(launcher: Launcher, tmp_path: Path) -> None:
    # Defaults: --workers 1, the server header sent.
    config = write_config(tmp_path, config_text(0, 2, **{'"no-server-header"': "true"}))
    server = launcher.start("--config", str(config))
    assert len(server.pids()) == 2
    assert "server" not in get(f"{server.url}/default").headers


def test_config_file_unknown_key_is_an_error(launcher: Launcher, tmp_path: Path) -> None:
    config = write_config(tmp_path, config_text(0, 1) + "wokrers_typo = 4\n")
    result = launcher.run("--config", str(config))
    assert result.returncode == 2, result.stderr
    assert "wokrers_typo" in result.stderr, result.stderr
    assert "listening on" not in result.stderr


def test_config_file_that_is_not_toml_is_an_error(launcher: Launcher, tmp_path: Path) -> None:
    config = write_config(tmp_path, "port = = 9\n")
    result = launcher.run("--config", str(config))
    assert result.returncode == 2, result.stderr
    assert str(config) in result.stderr, result.stderr


def test_config_file_missing_is_an_error(launcher: Launcher, tmp_path: Path) -> None:
    result = launcher.run(*APP, "--config", str(tmp_path / "missing.toml"))
    assert result.returncode != 0
    assert "missing.toml" in result.stderr, result.stderr


def test_config_file_float_options_take_whole_numbers(launcher: Launcher, tmp_path: Path) -> None:
    """timeout-keep-alive = 2 (TOML's integer) for a float option, as --timeout-keep-alive 2 is on
    the command line: it used to be a type mismatch (exit 2)."""
    config = write_config(tmp_path, config_text(0, 1, **{'"timeout-keep-alive"': "1", '"timeout-graceful-shutdown"': "5"}))
    server = launcher.start("--config", str(config))
    with RawConnection.tcp("127.0.0.1", server.port) as conn:
        conn.send(b"GET /ka HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.read_response().status == 200
        started = time.monotonic()
        assert conn.sock.recv(1) == b""  # closed by the keep-alive timeout
        assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("args", "env", "file", "server_header"),
    [
        # the command line beats the environment and the file, whichever of the pair each gives
        (["--server-header"], {"ASGI_GATEWAY_NO_SERVER_HEADER": "1"}, {}, True),
        (["--server-header"], {}, {"no-server-header": "true"}, True),
        (["--no-server-header"], {"ASGI_GATEWAY_SERVER_HEADER": "true"}, {}, False),
        # the environment beats the file
        ([], {"UVICORN_SERVER_HEADER": "true"}, {"no-server-header": "true"}, True),
        ([], {"UVICORN_NO_SERVER_HEADER": "true"}, {"server-header": "true"}, False),
        # an empty variable is not set (as click reads it)
        ([], {"UVICORN_NO_SERVER_HEADER": ""}, {"server-header": "false"}, False),
        ([], {"UVICORN_SERVER_HEADER": ""}, {}, True),
        # at one level, the "no" option wins
        (["--server-header", "--no-server-header"], {}, {}, False),
        ([], {}, {}, True),
    ],
)
def test_on_off_pairs_follow_the_precedence(
    launcher: Launcher, tmp_path: Path, args: list[str], env: dict[str, str], file: dict[str, str], server_header: bool
) -> None:
    """README: "Precedence: option > environment > config file > default", for the on/off pairs
    too (--server-header/--no-server-header; --access-log, --date-header, --proxy-headers and
    --use-colors are read the same way): a "no" given at a lower level used to win."""
    config = write_config(tmp_path, config_text(0, 1, **{f'"{k}"': v for k, v in file.items()}))
    server = launcher.start("--config", str(config), *args, env=clean_env(**env))
    assert ("server" in get(f"{server.url}/pair").headers) == server_header


@pytest.mark.parametrize("word", ["no", "off", "N", "0", "False"])
def test_boolean_environment_variables_take_clicks_words(launcher: Launcher, word: str) -> None:
    """uvicorn (click) reads UVICORN_ACCESS_LOG=no; so does the gateway (it used to exit 2)."""
    server = launcher.start(*APP, "--port", "0", env=clean_env(UVICORN_ACCESS_LOG=word))
    assert get(f"{server.url}/quiet-{word}").status_code == 200
    time.sleep(0.3)
    assert f"/quiet-{word}" not in server.log()


def test_ws_per_message_deflate_takes_uvicorns_argument_words(launcher: Launcher) -> None:
    server = launcher.start(*APP, "--port", "0", "--ws-per-message-deflate", "False")
    assert get(f"{server.url}/deflate-off").status_code == 200


def test_metrics_port_in_use_is_a_startup_failure_exit_3(launcher: Launcher) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = launcher.run(*APP, "--port", "0", "--metrics-address", f"127.0.0.1:{taken.getsockname()[1]}")
    assert result.returncode == 3, result.stderr
    assert "--metrics-address" in result.stderr and "address already in use" in result.stderr


# --- --app-dir, --factory, --python -----------------------------------------------------------

MODULE_TEMPLATE = """
import json, os, sys

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({"file": __file__, "cwd": os.getcwd(), "marker": MARKER}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})

MARKER = %r
"""


def write_module(directory: Path) -> tuple[str, str]:
    """A one-file app in directory; returns (module name, marker)."""
    name = f"deploy_mod_{uuid.uuid4().hex[:8]}"
    marker = uuid.uuid4().hex
    (directory / f"{name}.py").write_text(MODULE_TEMPLATE % marker)
    return name, marker


def test_app_dir(launcher: Launcher, tmp_path: Path) -> None:
    module, marker = write_module(tmp_path)
    server = launcher.start(f"{module}:app", "--app-dir", str(tmp_path), "--port", "0")  # cwd: REPO_ROOT
    data = get(f"{server.url}/").json()
    assert data["marker"] == marker
    assert Path(data["file"]).parent == tmp_path


def test_app_dir_default_is_the_current_directory(launcher: Launcher, tmp_path: Path) -> None:
    module, marker = write_module(tmp_path)
    server = launcher.start(f"{module}:app", "--port", "0", cwd=tmp_path)
    assert get(f"{server.url}/").json()["marker"] == marker


def test_app_dir_elsewhere_means_the_module_is_not_found(launcher: Launcher, tmp_path: Path) -> None:
    module, _ = write_module(tmp_path)
    result = launcher.run(f"{module}:app", "--app-dir", str(APPS_DIR), "--port", "0")
    assert result.returncode == 3, result.stderr  # README: a bad APP exits with status 3
    assert module in result.stderr


def test_factory(launcher: Launcher) -> None:
    server = launcher.start("testapp:create_app", "--factory", "--app-dir", str(APPS_DIR), "--port", "0")
    assert get(f"{server.url}/made/by/factory").json()["scope"]["path"] == "/made/by/factory"


def test_factory_on_something_that_is_not_a_factory(launcher: Launcher) -> None:
    # testapp:app takes (scope, receive, send): calling it with no arguments raises TypeError.
    result = launcher.run("testapp:app", "--factory", "--app-dir", str(APPS_DIR), "--port", "0")
    assert result.returncode == 3, result.stderr
    assert "TypeError" in result.stderr
    assert "listening on" not in result.stderr


def test_python_chooses_the_interpreter(launcher: Launcher, tmp_path: Path) -> None:
    # A wrapper script as the interpreter: the workers run through it (they see what it exports).
    wrapper = tmp_path / "wrapped-python"
    wrapper.write_text(f'#!/bin/sh\nDEPLOY_WRAPPED=yes exec "{venv_python()}" "$@"\n')
    wrapper.chmod(0o755)
    server = launcher.start("deploy_app:app", "--app-dir", str(APPS_DIR), "--port", "0", "--python", str(wrapper), python=False)
    assert get(f"{server.url}/_/env", params={"names": "DEPLOY_WRAPPED"}).json() == {"DEPLOY_WRAPPED": "yes"}


@pytest.mark.parametrize("missing", ["python_worker", "msgpack", "interpreter"])
def test_python_without_what_the_workers_need(launcher: Launcher, tmp_path: Path, missing: str) -> None:
    # README: "the gateway says so plainly when the worker package or msgpack is missing there".
    # `python -S` has no site-packages: no msgpack, and no python_worker unless on PYTHONPATH.
    wrapper = tmp_path / "bare-python"
    pythonpath = f"PYTHONPATH={REPO_ROOT / 'python_worker'} " if missing == "msgpack" else ""
    wrapper.write_text(f'#!/bin/sh\n{pythonpath}exec "{venv_python()}" -S "$@"\n')
    wrapper.chmod(0o755)
    python = str(wrapper) if missing != "interpreter" else str(tmp_path / "no-such-python")
    command = [str(BINARY), "run", "testapp:app", "--app-dir", str(APPS_DIR), "--port", "0", "--python", python]
    # cwd: not the repository, whose python_worker/ directory would be found by `python -m`.
    result = subprocess.run(command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=15)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert python in last, result.stderr
    if missing != "interpreter":
        assert missing in last and "pip install" in last, result.stderr
    assert "listening on" not in result.stderr


# --- --env-file -------------------------------------------------------------------------------


def test_env_file_reaches_the_app_and_is_never_logged(launcher: Launcher, tmp_path: Path) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    env_file = tmp_path / "app.env"
    env_file.write_text(
        "# a comment, then a blank line\n"
        "\n"
        f"DEPLOY_SECRET={secret}\n"
        "export DEPLOY_EXPORTED=exported\n"
        'DEPLOY_DOUBLE="two words # not a comment"\n'
        "DEPLOY_SINGLE='single $HOME'\n"
        "DEPLOY_INLINE=value # an inline comment\n"
        # The workers' environment, not the gateway's settings:
        "ASGI_GATEWAY_ROOT_PATH=/not-for-the-gateway\n"
    )
    server = launcher.start(
        "deploy_app:app", "--app-dir", str(APPS_DIR), "--port", "0", "--env-file", str(env_file),
        "--log-level", "trace",
    )
    names = "DEPLOY_SECRET,DEPLOY_EXPORTED,DEPLOY_DOUBLE,DEPLOY_SINGLE,DEPLOY_INLINE,ASGI_GATEWAY_ROOT_PATH"
    response = get(f"{server.url}/_/env", params={"names": names})
    assert response.json() == {
        "DEPLOY_SECRET": secret,
        "DEPLOY_EXPORTED": "exported",
        "DEPLOY_DOUBLE": "two words # not a comment",
        "DEPLOY_SINGLE": "single $HOME",
        "DEPLOY_INLINE": "value",
        "ASGI_GATEWAY_ROOT_PATH": "/not-for-the-gateway",
    }
    assert get(f"{server.url}/plain").json()["scope"]["root_path"] == ""
    assert server.stop() == 0
    log = server.log()
    assert " DBG " in log or " TRC " in log, f"no debug/trace output at --log-level trace:\n{log}"
    assert secret not in log, "the --env-file value is in the gateway's log"


def test_env_file_errors_do_not_show_the_value(launcher: Launcher, tmp_path: Path) -> None:
    # As python-dotenv (uvicorn's --env-file): a statement that cannot be parsed is skipped with a
    # warning naming its line, and the others load.
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    env_file = tmp_path / "bad.env"
    env_file.write_text(f'GOOD=1\nBAD="{secret}" junk after the quotes\nAFTER=2\n')
    server = launcher.start("deploy_app:app", "--app-dir", str(APPS_DIR), "--port", "0", "--env-file", str(env_file))
    assert get(f"{server.url}/_/env", params={"names": "GOOD,BAD,AFTER"}).json() == {"GOOD": "1", "BAD": None, "AFTER": "2"}
    assert server.stop() == 0
    log = server.log()
    assert "line 2" in log, log
    assert secret not in log


def test_env_file_is_read_as_python_dotenv_reads_it(launcher: Launcher, tmp_path: Path) -> None:
    # uvicorn's --env-file is python-dotenv's load_dotenv: the environment wins over the file,
    # ${VAR} and ${VAR:-default} are expanded, double-quoted values may span lines, a comment may
    # follow a quoted value, and a bare KEY sets nothing.
    env_file = tmp_path / "app.env"
    env_file.write_text(
        "DEPLOY_FROM_ENV=file\n"
        'DEPLOY_EXPANDED="${DEPLOY_BASE}/${DEPLOY_FROM_ENV}/${DEPLOY_MISSING:-fallback}"\n'
        'DEPLOY_QUOTED="value" # a comment after the quotes\n'
        'DEPLOY_PEM="-----BEGIN KEY-----\nabc\n-----END KEY-----"\n'
        "DEPLOY_BARE\n"
    )
    server = launcher.start(
        "deploy_app:app", "--app-dir", str(APPS_DIR), "--port", "0", "--env-file", str(env_file),
        env=clean_env(DEPLOY_FROM_ENV="env", DEPLOY_BASE="/base"),
    )
    names = "DEPLOY_FROM_ENV,DEPLOY_EXPANDED,DEPLOY_QUOTED,DEPLOY_PEM,DEPLOY_BARE"
    assert get(f"{server.url}/_/env", params={"names": names}).json() == {
        "DEPLOY_FROM_ENV": "env",
        "DEPLOY_EXPANDED": "/base/env/fallback",
        "DEPLOY_QUOTED": "value",
        "DEPLOY_PEM": "-----BEGIN KEY-----\nabc\n-----END KEY-----",
        "DEPLOY_BARE": None,
    }


# --- --lifespan, --root-path -------------------------------------------------------------------


@pytest.mark.parametrize("mode, started", [("off", False), ("on", True), ("auto", True)])
def test_lifespan(launcher: Launcher, mode: str, started: bool) -> None:
    server = launcher.start(*APP, "--port", "0", "--lifespan", mode)
    data = get(f"{server.url}/_/lifespan").json()
    assert data["lifespan"]["startup"] is started
    assert (data["state"] or {}).get("from_lifespan") == ("yes" if started else None)


def test_lifespan_bad_value(launcher: Launcher) -> None:
    result = launcher.run(*APP, "--port", "0", "--lifespan", "sometimes")
    assert result.returncode == 2
    assert "sometimes" in result.stderr


BAD_NUMBERS = [
    ("--timeout-keep-alive", "-1"), ("--timeout-graceful-shutdown", "nan"), ("--timeout-lifespan-shutdown", "-3"),
    ("--timeout-request", "inf"), ("--ws-ping-interval", "-0.5"), ("--backlog", "-5"), ("--limit-concurrency", "-1"),
    ("--limit-request-body", "-1"), ("--ws-max-size", "0"), ("--h11-max-incomplete-event-size", "0"), ("--fd", "-2"),
    # Too large to mean "more": a WebSocket message limit past the protocol's u32 frame limit (every
    # worker refused the gateway's HELLO, forever), a backlog past listen's int (2^32 became 0), MiB
    # past int64 bytes.
    ("--ws-max-size", "5000000000"), ("--backlog", "4294967296"), ("--workers-max-rss", "9999999999999"),
]


@pytest.mark.parametrize("flag, value", BAD_NUMBERS, ids=[f"{f}={v}" for f, v in BAD_NUMBERS])
def test_a_number_out_of_range_is_refused_before_anything_starts(launcher: Launcher, flag: str, value: str) -> None:
    # A negative timeout or size (or NaN) would otherwise mean something odd (no timeout, no
    # limit); it is a usage error (exit 2) that names the option, and no worker starts.
    result = launcher.run(*APP, "--port", "0", flag, value)
    assert result.returncode == 2, result.stderr
    assert f"{flag} " in result.stderr and "expected" in result.stderr, result.stderr
    assert "worker ready" not in result.stderr and "serving" not in result.stderr, result.stderr


def test_root_path(launcher: Launcher) -> None:
    server = launcher.start(*APP, "--port", "0", "--root-path", "/api/v1")
    scope = get(f"{server.url}/items/1?x=2").json()["scope"]
    # uvicorn's behaviour: root_path is prefixed to path and raw_path.
    assert scope["root_path"] == "/api/v1"
    assert scope["path"] == "/api/v1/items/1"
    assert scope["raw_path"] == "/api/v1/items/1"
    assert scope["query_string"] == "x=2"


# --- uvicorn's --loop, --http, --ws (--interface is honoured: test_rfc_conformance8.py) ---------


UVICORN_FLAGS = [("--loop", "asyncio"), ("--http", "h11"), ("--ws", "websockets")]


@pytest.mark.parametrize("form", ["after-app", "after-app-equals", "before-app"])
@pytest.mark.parametrize("flag, value", UVICORN_FLAGS, ids=[f for f, _ in UVICORN_FLAGS])
def test_uvicorn_engine_flags_are_accepted_with_a_message(launcher: Launcher, flag: str, value: str, form: str) -> None:
    # README: "uvicorn's --loop, --http and --ws ... are accepted and ignored with a message".
    # uvicorn's own usage puts them after APP: `uvicorn app:app --loop asyncio`.
    if form == "after-app":
        args = ["testapp:app", flag, value]
    elif form == "after-app-equals":
        args = ["testapp:app", f"{flag}={value}"]
    else:
        args = [flag, value, "testapp:app"]
    server = launcher.start(*args, "--app-dir", str(APPS_DIR), "--port", "0")
    response = get(f"{server.url}/engine")
    assert response.status_code == 200
    message = [line for line in server.log().splitlines() if flag in line and "ignored" in line]
    assert message, f"no message about {flag} in:\n{server.log()}"
    assert f"{flag} {value} ignored" in message[0], message[0]
