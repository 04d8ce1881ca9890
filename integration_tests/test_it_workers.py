"""Several worker processes behind one listener."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from gateway_harness import APPS_DIR, GatewayServer


def test_one_worker_serves_many_requests_at_once(server: GatewayServer) -> None:
    # Requests are multiplexed over the worker's connection: 20 one-second requests overlap.
    def request(index: int) -> int:
        return httpx.get(f"{server.url}/_/slow?seconds=1&i={index}", timeout=30).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(request, range(20)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 20
    assert elapsed < 6, f"20 concurrent 1 s requests took {elapsed:.1f} s on one worker"


def test_two_workers_share_the_requests(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, workers=2)

    def request(index: int) -> tuple[int, int]:
        # Slow enough that requests overlap, so that one worker alone cannot take them all.
        response = httpx.get(f"{server.url}/_/slow?seconds=0.1&i={index}", timeout=20)
        return response.status_code, int(response.text)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(request, range(80)))
    assert [status for status, _ in results] == [200] * 80
    pids = {pid for _, pid in results}
    assert len(pids) == 2, f"worker pids seen: {pids}"

    # Many quick requests on keep-alive connections succeed too.
    with httpx.Client(base_url=server.url) as client:
        for index in range(200):
            response = client.post("/_/echo", content=f"request {index}".encode())
            assert response.status_code == 200
            assert response.text == f"request {index}"
