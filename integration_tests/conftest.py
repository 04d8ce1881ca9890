"""Fixtures of the integration tests: they run the real binary, `bin/asgi-gateway`.

`make test` runs `pytest -q python_worker/tests integration_tests` from the repository root, so
no ini file inside this folder is read: the per-test timeout is set here instead.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the test modules import gateway_harness too
    sys.path.insert(0, str(HERE))

from gateway_harness import (  # noqa: E402
    APPS_DIR,
    GatewayServer,
    ServerStartError,
    build_binary,
    start_server,
)

TEST_TIMEOUT = 60  # seconds, per test (pytest-timeout)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


@pytest.fixture(scope="session")
def gateway_binary() -> None:
    try:
        build_binary()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"cannot build bin/asgi-gateway: {exc}", pytrace=False)


class ServerPool:
    """Starts servers and stops them all at teardown; stderr goes to a file per server."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.servers: list[GatewayServer] = []

    def start(self, app: str = "testapp:app", **kwargs: Any) -> GatewayServer:
        stderr_path = self.directory / f"server-{len(self.servers)}.stderr"
        try:
            server = start_server(app, stderr_path, **kwargs)
        except ServerStartError as exc:
            pytest.fail(str(exc), pytrace=False)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def module_servers(gateway_binary: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    pool = ServerPool(tmp_path_factory.mktemp("gateway"))
    yield pool
    pool.stop_all()


@pytest.fixture
def servers(gateway_binary: None, tmp_path: Path) -> Iterator[ServerPool]:
    pool = ServerPool(tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="module")
def server(module_servers: ServerPool) -> GatewayServer:
    """The raw test app (integration_tests/apps/testapp.py), one worker, shared by a module."""
    return module_servers.start("testapp:app", app_dir=APPS_DIR, workers=1)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory path, for Unix sockets (their paths are limited to ~107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="gw-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
