"""The command line: bad APP strings, --version, --factory, interpreter choice, shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_harness import APPS_DIR, BINARY, REPO_ROOT, gateway_command, venv_python


def run_bad_app(app: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], float]:
    command = gateway_command(app, "--app-dir", str(APPS_DIR), "--host", "127.0.0.1", "--port", "0", *extra)
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"`{' '.join(command)}` still ran after 10 s; stderr:\n{stderr}")
    return result, time.monotonic() - started


BAD_APPS = {
    "no colon": ("testapp", ["testapp"]),
    "empty attribute": ("testapp:", ["testapp:"]),
    "empty module": (":app", [":app"]),
    "missing module": ("no_such_module_xyz:app", ["no_such_module_xyz"]),
    "missing attribute": ("testapp:no_such_attribute", ["no_such_attribute"]),
    "import raises": ("broken_app:app", ["RuntimeError", "broken_app fails to import on purpose"]),
}


@pytest.mark.parametrize("app, expected", list(BAD_APPS.values()), ids=list(BAD_APPS))
def test_bad_app_exits_non_zero_with_a_readable_error(gateway_binary: None, app: str, expected: list[str]) -> None:
    result, elapsed = run_bad_app(app)
    output = result.stderr
    assert result.returncode != 0, f"exit status 0 for APP {app!r}; stderr:\n{output}"
    assert elapsed < 10
    for text in expected:
        assert text in output, f"{text!r} not in stderr:\n{output}"
    assert "listening on" not in output
    assert "goroutine " not in output and "panic:" not in output, output


def test_missing_module_names_the_python_error(gateway_binary: None) -> None:
    result, _ = run_bad_app("no_such_module_xyz:app")
    assert "ModuleNotFoundError" in result.stderr or "No module named" in result.stderr, result.stderr


def test_missing_dependency_of_the_app_module_is_named(gateway_binary: None) -> None:
    # The app module exists; what is missing is a module it imports: say that, not "no app module".
    result, elapsed = run_bad_app("needs_missing_dep:app")
    assert result.returncode != 0
    assert elapsed < 10
    assert "some_missing_dependency_xyz" in result.stderr, result.stderr


def test_bad_app_with_several_workers_exits_too(gateway_binary: None) -> None:
    result, elapsed = run_bad_app("broken_app:app", "--workers", "3")
    assert result.returncode != 0
    assert elapsed < 10
    assert "broken_app fails to import on purpose" in result.stderr


def test_version(gateway_binary: None) -> None:
    result = subprocess.run([str(BINARY), "--version"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0
    assert re.search(r"\d+\.\d+\.\d+", result.stdout + result.stderr), result.stdout + result.stderr


def test_factory(servers: Any) -> None:
    server = servers.start("testapp:create_app", app_dir=APPS_DIR, extra_args=["--factory"])
    response = httpx.get(f"{server.url}/from/factory")
    assert response.status_code == 200
    assert response.json()["scope"]["path"] == "/from/factory"


def test_factory_without_the_flag_is_detected(servers: Any) -> None:
    # As uvicorn: a function that takes no arguments is an app factory, used with a warning.
    server = servers.start("testapp:create_app", app_dir=APPS_DIR)
    response = httpx.get(f"{server.url}/from/detected/factory")
    assert response.status_code == 200
    assert response.json()["scope"]["path"] == "/from/detected/factory"


def test_interpreter_from_virtual_env(servers: Any) -> None:
    venv = REPO_ROOT / ".venv"
    if not (venv / "bin" / "python").exists():
        pytest.skip("no .venv in the repository")
    env = dict(os.environ, VIRTUAL_ENV=str(venv))
    # python3 on PATH may lack the dependencies: the venv must be the one chosen.
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(venv)))
    server = servers.start("testapp:app", app_dir=APPS_DIR, env=env, python_flag=False)
    response = httpx.get(f"{server.url}/_/python")
    assert response.status_code == 200
    assert Path(response.json()["prefix"]).resolve() == venv.resolve()


def test_a_virtual_env_without_an_interpreter_is_passed_over_with_a_warning(servers: Any, tmp_path: Path) -> None:
    # A deleted virtualenv still named by $VIRTUAL_ENV: python3 on PATH serves, and the log says so
    # (it may lack the app's packages; the advice would otherwise point at an interpreter never named).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "python3"  # (a script: a symlink would not find the venv's pyvenv.cfg)
    shim.write_text(f'#!/bin/sh\nexec {venv_python()} "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, VIRTUAL_ENV=str(tmp_path / "deleted-venv"))
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    server = servers.start("testapp:app", app_dir=APPS_DIR, env=env, python_flag=False)
    assert httpx.get(f"{server.url}/_/python").status_code == 200
    assert "$VIRTUAL_ENV has no usable bin/python: the workers use python3 on PATH" in server.stderr()
    assert str(bin_dir / "python3") in server.stderr()


def test_python_flag_chooses_the_interpreter(server: Any) -> None:
    response = httpx.get(f"{server.url}/_/python")
    assert response.json()["executable"] == venv_python()


def wait_for_text(server: Any, text: str, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.stderr():
            return True
        time.sleep(0.05)
    return text in server.stderr()


def test_access_log_is_on_by_default(server: Any) -> None:
    path = f"/access-log-{uuid.uuid4().hex}"
    assert httpx.get(f"{server.url}{path}").status_code == 200
    assert wait_for_text(server, path), server.stderr()[-2000:]


def test_no_access_log(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, extra_args=["--no-access-log"])
    path = f"/access-log-{uuid.uuid4().hex}"
    assert httpx.get(f"{server.url}{path}").status_code == 200
    assert not wait_for_text(server, path, timeout=1.0), server.stderr()[-2000:]


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def child_pids(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children.update(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return children


def test_sigterm_stops_the_server_and_its_workers(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, workers=2)
    pids = {int(httpx.get(f"{server.url}/_/pid").text)} | child_pids(server.process.pid)
    assert len(pids) >= 2, pids
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the gateway did not exit within 10 s of SIGTERM\n{server.stderr()}")
    assert code == 0, server.stderr()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(process_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert not any(process_alive(pid) for pid in pids), "worker processes outlived the gateway"
