"""Isolation of the worker sockets: a private 0700 directory per gateway, the socket itself 0600 and
unlinked once its worker has connected, everything removed on exit; another local user cannot get in."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from gateway_harness import GatewayServer


def socket_dirs(pid: int) -> list[Path]:
    return sorted(Path("/tmp").glob(f"asgi-gateway-{pid}-*"))


def test_socket_directory_is_private_and_removed_on_exit(servers) -> None:
    server: GatewayServer = servers.start()
    dirs = socket_dirs(server.process.pid)
    assert len(dirs) == 1, dirs
    mode = stat.S_IMODE(dirs[0].stat().st_mode)
    assert mode == 0o700, oct(mode)
    # The socket is unlinked as soon as its worker connected: nothing is left to connect to.
    assert list(dirs[0].iterdir()) == []
    assert server.stop() == 0
    assert socket_dirs(server.process.pid) == []


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser to act as another user")
def test_another_user_cannot_enter_the_socket_directory(servers) -> None:
    server: GatewayServer = servers.start()
    (directory,) = socket_dirs(server.process.pid)
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")
    probe = subprocess.run(
        ["runuser", "-u", "nobody", "--", python, "-c", f"import os; os.listdir({str(directory)!r})"],
        capture_output=True, text=True, timeout=20,
    )
    assert probe.returncode != 0 and "Permission denied" in probe.stderr, probe
