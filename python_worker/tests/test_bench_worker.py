"""The worker micro-benchmark (``bench_worker.py``, issue 6) runs and checks what it measures: a short
run of each workload on each loop, so that a change to the worker's writes cannot break it unseen."""

from __future__ import annotations

import bench_worker
import pytest

from gateway_fake import LOOP_NAMES, new_loop


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("workload", ["hello", "ws-echo"])
@pytest.mark.parametrize("loop_name", LOOP_NAMES)
def test_bench_worker_runs_and_checks_its_responses(loop_name: str, workload: str, batch: int) -> None:
    run = bench_worker.bench if workload == "hello" else bench_worker.bench_ws
    loop = new_loop(loop_name)
    try:
        # (bench and bench_ws assert the frames of the last round: a response or an echo per stream)
        cpu, wall, writes = loop.run_until_complete(run(400, batch))
    finally:
        loop.close()
    assert cpu > 0 and wall > 0
    # One batch's answers go out in at most two writes (the first send at once, the rest at the
    # iteration's end), and at least one.
    assert 1 / batch <= writes <= 2 / batch, writes
