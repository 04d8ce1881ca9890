"""Lifecycle and supervision: lifespan, signals, worker deaths and stops, recycling, reload, limits, metrics.

Each test starts its own gateway (the `servers` fixture) with short timeouts given by flags, so that
the module runs in well under 90 s. Apps: `apps/lifespan_app.py` (lifespan behaviours; it records
events with pid and time to the file named by $LIFESPAN_LOG, which the workers inherit from the
gateway's environment) and `apps/testapp.py` (`/_/pid`, `/_/slow`).

Expectations: the ASGI lifespan spec (asgiref `specs/lifespan.rst`: startup before any request,
`lifespan.startup.failed` makes the server exit with an error, `state` shallow-copied into each
request scope), uvicorn's `--lifespan auto|on|off` semantics, and the README's options and signals.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from gateway_harness import APPS_DIR, EXAMPLES_DIR, REPO_ROOT, gateway_command

STARTUP_FAILURE_MESSAGE = "lifespan_app: the database at db.invalid:5432 is unreachable"
STARTUP_EXCEPTION_MESSAGE = "lifespan_app: startup raised on purpose"
UNSUPPORTED_MESSAGE = "this app can only handle ASGI/HTTP connections, not lifespan."


# --- helpers -----------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Polls predicate until it returns a truthy value (returned) or timeout passes (returns None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def children(pid: int) -> set[int]:
    """The live (not zombie) child processes of pid: the gateway's workers."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) >= 2 and fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(entry))
    return found


def lifespan_env(log: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "LIFESPAN_LOG": str(log), **extra}


@dataclass
class Event:
    name: str
    pid: int
    time: float
    detail: str


def events(log: Path) -> list[Event]:
    if not log.exists():
        return []
    result = []
    for line in log.read_text().splitlines():
        name, pid, at, detail = line.split("\t")
        result.append(Event(name, int(pid), float(at), detail))
    return result


def names(log: Path) -> list[str]:
    return [event.name for event in events(log)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the Prometheus text format, or None when it is absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", line.strip())
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return None


@dataclass
class Result:
    started: float
    ended: float
    status: int | None  # None: an exception
    body: str  # the body, or the exception's type and text


@dataclass
class Load:
    """Client threads sending requests in a loop, each on its own keep-alive httpx.Client."""

    url: str
    path: str
    threads: int
    results: list[Result] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=15) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.get(self.path)
                    result = Result(started, time.monotonic(), response.status_code, response.text)
                except httpx.HTTPError as exc:
                    result = Result(started, time.monotonic(), None, f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.results.append(result)

    def __enter__(self) -> "Load":
        for _ in range(self.threads):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(20)

    def snapshot(self) -> list[Result]:
        with self._lock:
            return list(self.results)

    def failures(self) -> list[Result]:
        return [r for r in self.snapshot() if r.status != 200]

    def pids(self, since: float = 0.0) -> Counter[int]:
        return Counter(int(r.body) for r in self.snapshot() if r.status == 200 and r.started >= since)


def request_in_thread(url: str, timeout: float = 30) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["response"] = httpx.get(url, timeout=timeout)
        except httpx.HTTPError as exc:
            out["error"] = exc
        out["done_at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


@contextmanager
def raw_gateway(app: str, stderr_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A gateway started without waiting for it to listen (for startups that fail or hang)."""
    command = gateway_command(app, "--app-dir", str(APPS_DIR), "--host", "127.0.0.1", "--port", "0", *args)
    with open(stderr_path, "wb") as out:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(5)


# --- lifespan ----------------------------------------------------------------------------------


def test_lifespan_startup_before_traffic_and_shutdown_after_inflight_requests(servers: Any, tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    server = servers.start("lifespan_app:app", env=lifespan_env(log))  # --lifespan auto (the default)
    # Startup completed before the gateway listened, so before any request could come.
    assert names(log) == ["lifespan-scope", "startup", "startup-complete"], server.stderr()
    worker = events(log)[0].pid

    assert httpx.get(f"{server.url}/first", timeout=5).text == "ok"
    thread, out = request_in_thread(f"{server.url}/slow?seconds=1.5&tag=inflight")
    assert wait_for(lambda: "request-start" in names(log), 5), names(log)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert "shutdown" not in names(log)  # not while a request is in flight
    thread.join(10)
    assert "error" not in out, f"the in-flight request failed: {out.get('error')!r}"
    assert out["response"].status_code == 200
    assert server.process.wait(10) == 0
    assert time.monotonic() - signalled < 5

    recorded = events(log)
    assert [e.name for e in recorded] == [
        "lifespan-scope", "startup", "startup-complete", "request", "request-start", "request-end", "shutdown",
    ], server.stderr()
    assert {e.pid for e in recorded} == {worker}
    # (time.monotonic is CLOCK_MONOTONIC, the same clock in every process on Linux)
    assert recorded[-1].time >= recorded[-2].time >= signalled  # shutdown after the request finished


def test_lifespan_state_is_shallow_copied_into_each_request(servers: Any, tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    server = servers.start("lifespan_app:app", env=lifespan_env(log), extra_args=["--lifespan", "on"])
    with httpx.Client(base_url=server.url, timeout=5) as client:
        first, second, third = (client.get("/state").json() for _ in range(3))
    worker = events(log)[0].pid
    # What startup put in the lifespan state is in every request's scope["state"].
    assert first == {
        "has_state": True,
        "pid": worker,
        "state": {"db": f"connection-of-{worker}", "counter": 0, "shared_list": []},
    }
    # Each request mutated its scope["state"] (a new key, a rebound counter): a copy, so the next
    # request does not see that. The list is the same object (a shallow copy): its append shows.
    assert second["state"] == {"db": f"connection-of-{worker}", "counter": 0, "shared_list": ["appended"]}
    assert third["state"] == {"db": f"connection-of-{worker}", "counter": 0, "shared_list": ["appended", "appended"]}


@pytest.mark.parametrize(
    ("app", "mode", "message"),
    [
        ("failing_app", "auto", STARTUP_FAILURE_MESSAGE),
        ("failing_app", "on", STARTUP_FAILURE_MESSAGE),
        ("raising_app", "on", STARTUP_EXCEPTION_MESSAGE),
        ("unsupported_app", "on", UNSUPPORTED_MESSAGE),
    ],
)
def test_failed_startup_exits_non_zero_with_the_message_and_no_respawn(
    gateway_binary: None, tmp_path: Path, app: str, mode: str, message: str
) -> None:
    # lifespan.startup.failed: "the server must ... exit with an error" (lifespan spec); under
    # --lifespan on, an exception in the lifespan call is a failed startup too (uvicorn).
    log = tmp_path / "events.log"
    stderr_path = tmp_path / "stderr"
    started = time.monotonic()
    with raw_gateway(f"lifespan_app:{app}", stderr_path, "--lifespan", mode, env=lifespan_env(log)) as process:
        assert wait_for(lambda: process.poll() is not None, 10), (
            f"the gateway still runs 10 s after a failed startup\n{stderr_path.read_text()}"
        )
        code = process.returncode
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # a respawned worker would record another startup by now
    stderr = stderr_path.read_text(errors="replace")
    assert code > 0, f"exit status {code}\n{stderr}"
    assert elapsed < 5, f"took {elapsed:.1f} s to exit"
    assert message in stderr
    assert "listening on" not in stderr
    assert names(log).count("lifespan-scope") == 1, f"the worker was respawned: {names(log)}"


@pytest.mark.parametrize("app", ["unsupported_app", "raising_app"])
def test_auto_serves_an_app_whose_lifespan_raises(servers: Any, tmp_path: Path, app: str) -> None:
    # Like Django's ASGIHandler (which raises on a lifespan scope): under auto, an exception before
    # startup completes means "lifespan unsupported", and the app is served without it.
    log = tmp_path / "events.log"
    server = servers.start(f"lifespan_app:{app}", env=lifespan_env(log), extra_args=["--lifespan", "auto"])
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(3):
            response = client.get("/hello")
            assert (response.status_code, response.text) == (200, "ok")
    assert "ASGI 'lifespan' protocol appears unsupported" in server.stderr()
    assert server.stop() == 0
    assert "shutdown" not in names(log)
    assert "startup-complete" not in names(log)


def test_lifespan_off_never_calls_the_app_with_a_lifespan_scope(servers: Any, tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    server = servers.start("lifespan_app:app", workers=2, env=lifespan_env(log), extra_args=["--lifespan", "off"])
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(4):
            assert client.get("/hello").text == "ok"
    assert server.stop() == 0
    assert names(log) == ["request"] * 4


def test_startup_that_never_completes_does_not_serve(gateway_binary: None, tmp_path: Path) -> None:
    # There is no option for the worker startup timeout (60 s, gateway.DefaultConfig().StartupTimeout):
    # within this test the gateway must simply not be serving. (After 60 s it exits 1 with "the
    # worker did not connect within 1m0s (is the app slow to import?)".)
    log = tmp_path / "events.log"
    stderr_path = tmp_path / "stderr"
    with raw_gateway("lifespan_app:hanging_app", stderr_path, env=lifespan_env(log)) as process:
        time.sleep(3)
        assert process.poll() is None
        stderr = stderr_path.read_text(errors="replace")
        assert "listening on" not in stderr
        assert names(log) == ["lifespan-scope", "startup"]


def test_sigterm_during_a_startup_that_never_completes_stops_the_gateway(gateway_binary: None, tmp_path: Path) -> None:
    # SIGINT/SIGTERM stop the gateway (README: Signals), exit 0; a hung lifespan startup must not
    # make the gateway deaf to them until its 60 s startup timeout.
    log = tmp_path / "events.log"
    stderr_path = tmp_path / "stderr"
    with raw_gateway("lifespan_app:hanging_app", stderr_path, env=lifespan_env(log)) as process:
        assert wait_for(lambda: "startup" in names(log), 10)
        workers = children(process.pid)
        process.send_signal(signal.SIGTERM)
        stopped = wait_for(lambda: process.poll() is not None, 5)
        assert stopped, (
            "the gateway ignored SIGTERM for 5 s while its worker's lifespan startup hung\n"
            + stderr_path.read_text(errors="replace")
        )
        # A stop asked for is not a failure (systemd would mark the unit failed on exit 1).
        assert process.returncode == 0, stderr_path.read_text(errors="replace")
        assert wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 5)


def test_django_example_is_served_under_lifespan_auto(servers: Any) -> None:
    server = servers.start("mysite.asgi:application", app_dir=EXAMPLES_DIR / "django_project")
    response = httpx.get(f"{server.url}/hello/", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"message": "Hello from Django", "method": "GET", "path": "/hello/", "query": {}}
    assert "ASGI 'lifespan' protocol appears unsupported" in server.stderr()


# --- worker deaths and stops under load --------------------------------------------------------

CONCURRENCY = 6


def test_kill_9_of_a_worker_under_load_fails_only_its_inflight_requests(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, workers=2)
    original = children(server.process.pid)
    assert len(original) == 2
    with Load(server.url, "/_/slow?seconds=0.05", CONCURRENCY) as load:
        assert wait_for(lambda: set(load.pids()) == original, 5), load.pids()
        victim = min(original)
        survivor = max(original)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for(lambda: (children(server.process.pid) - original) or None, 5)
        assert replaced, f"no new worker within 5 s\n{server.stderr()}"
        (new_pid,) = replaced
        assert wait_for(lambda: load.pids(since=killed_at)[new_pid] > 0, 5), "the new worker got no request"
        time.sleep(0.5)
    failures = load.failures()
    assert len(failures) <= CONCURRENCY, failures
    assert all(r.status == 502 for r in failures), failures  # README: 502 for the requests it held
    after = load.pids(since=killed_at + 0.2)
    assert victim not in after
    assert after[survivor] > 0 and after[new_pid] > 0
    assert children(server.process.pid) == {survivor, new_pid}


def test_sigstop_of_a_worker_is_caught_by_the_health_check_and_replaced(servers: Any) -> None:
    server = servers.start(
        "testapp:app", app_dir=APPS_DIR, workers=2, extra_args=["--timeout-worker-healthcheck", "1"]
    )
    original = children(server.process.pid)
    with Load(server.url, "/_/slow?seconds=0.05", CONCURRENCY) as load:
        assert wait_for(lambda: set(load.pids()) == original, 5), load.pids()
        victim, survivor = min(original), max(original)
        stopped_at = time.monotonic()
        os.kill(victim, signal.SIGSTOP)
        try:
            replaced = wait_for(lambda: (children(server.process.pid) - original) or None, 5)
            gone = wait_for(lambda: victim not in children(server.process.pid), 5)
        finally:
            if Path(f"/proc/{victim}").exists():
                os.kill(victim, signal.SIGKILL)
        replaced_at = time.monotonic()
        assert replaced and gone, f"stopped worker not replaced within 5 s\n{server.stderr()}"
        assert replaced_at - stopped_at < 4
        (new_pid,) = replaced
        assert wait_for(lambda: load.pids(since=replaced_at)[new_pid] > 0, 5)
        time.sleep(0.3)
    # Meanwhile the other worker kept answering.
    during = Counter(
        int(r.body) for r in load.snapshot() if r.status == 200 and stopped_at + 0.1 <= r.ended <= replaced_at
    )
    assert during[survivor] >= 10, during
    failures = load.failures()
    assert len(failures) <= CONCURRENCY, failures
    assert "health check" in server.stderr()


# --- recycling: SIGHUP, max requests ----------------------------------------------------------


def test_sighup_under_load_replaces_every_worker_without_a_failed_request(servers: Any) -> None:
    server = servers.start("testapp:app", app_dir=APPS_DIR, workers=2)
    original = children(server.process.pid)
    with Load(server.url, "/_/slow?seconds=0.01", 8) as load:
        assert wait_for(lambda: set(load.pids()) == original, 5)
        server.process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload complete" in server.stderr(), 15), server.stderr()
        new = wait_for(lambda: (lambda now: now if len(now) == 2 and not now & original else None)(
            children(server.process.pid)), 10)
        assert new, f"workers after the reload: {children(server.process.pid)}, before: {original}"
        settled = time.monotonic()
        time.sleep(0.5)
    assert load.failures() == []
    assert set(load.pids(since=settled)) == new
    assert len(load.snapshot()) > 100


def test_a_replaced_workers_lifespan_shutdown_is_not_cut_short(servers: Any, tmp_path: Path) -> None:
    """lifespan.rst: "A server must wait for this message before terminating." A worker replaced by
    SIGHUP whose lifespan shutdown takes 7 s finishes it: the gateway gives it
    --timeout-graceful-shutdown (10 s here; it used to give 5 s whatever the option, then kill)."""
    log = tmp_path / "lifespan.log"
    server = servers.start("lifespan_app:cleanup_app", env=lifespan_env(log),
                           extra_args=["--timeout-graceful-shutdown", "10"])
    (old,) = children(server.process.pid)
    server.process.send_signal(signal.SIGHUP)
    done = wait_for(lambda: [e for e in events(log) if e.name == "shutdown-complete" and e.pid == old], 15)
    assert done, (names(log), server.stderr())
    assert "killed" not in server.stderr(), server.stderr()


def test_a_lifespan_shutdown_longer_than_the_grace_finishes_at_sigterm(servers: Any, tmp_path: Path) -> None:
    """lifespan.rst: "A server must wait for this message before terminating." The requests' grace
    (--timeout-graceful-shutdown 1) does not bound the app's cleanup (7 s): it has
    --timeout-lifespan-shutdown, 10 s by default (it used to get the grace again, at least 5 s:
    killed after 6 s here)."""
    log = tmp_path / "lifespan.log"
    server = servers.start("lifespan_app:cleanup_app", env=lifespan_env(log),
                           extra_args=["--timeout-graceful-shutdown", "1"])
    (old,) = children(server.process.pid)
    assert server.stop(timeout=30) == 0
    assert [e for e in events(log) if e.name == "shutdown-complete" and e.pid == old], (names(log), server.stderr())
    assert "killed" not in server.stderr(), server.stderr()


def test_a_hung_lifespan_shutdown_is_bounded_by_default(servers: Any) -> None:
    """An app whose lifespan shutdown never ends (waiting on something gone) does not hold the
    gateway for long: --timeout-lifespan-shutdown, 10 s by default from when the worker's requests
    are done (none here), then the worker is killed, logged; the gateway exits 0."""
    server = servers.start("lifespan_app:slow_shutdown_app", app_dir=APPS_DIR, workers=1)
    started = time.monotonic()
    assert server.stop(timeout=40) == 0
    took = time.monotonic() - started
    assert 9 < took < 20, took
    assert "ran past --timeout-lifespan-shutdown; killed" in server.stderr(), server.stderr()[-3000:]


def test_recycling_closes_the_old_workers_websockets_with_1012(servers: Any) -> None:
    """A WebSocket never ends by itself, so a recycled worker's (SIGHUP here; --reload,
    --limit-max-requests, --workers-lifetime and --workers-max-rss retire a worker the same way) are
    closed at once, as at shutdown and as uvicorn does: 1012 (service restart, not 1011's unexpected
    condition) to the client, websocket.disconnect 1012 to the app; then the old worker runs its
    lifespan shutdown and exits."""
    from test_ws_protocol import raw_open, read_close, read_data_frame

    server = servers.start("conformance9_app:app", app_dir=APPS_DIR, workers=1,
                           extra_args=["--timeout-graceful-shutdown", "5"])
    old = httpx.get(f"{server.url}/pid", timeout=5).text
    conns = [raw_open(server, "/ws/hold", timeout=15)[0] for _ in range(2)]
    for conn in conns:
        assert read_data_frame(conn).payload == b"ready"
    sent = time.monotonic()
    server.process.send_signal(signal.SIGHUP)
    for conn in conns:
        with conn:
            assert read_close(conn).close_code == 1012
    assert time.monotonic() - sent < 4, "closed only after the graceful timeout"
    assert wait_for(lambda: server.stderr().count("hold: websocket.disconnect 1012") == 2, 10), server.stderr()[-3000:]
    assert wait_for(lambda: f"lifespan shutdown pid {old}" in server.stderr(), 10), server.stderr()[-3000:]
    assert "killed" not in server.stderr()
    assert httpx.get(f"{server.url}/pid", timeout=5).text != old


def test_messages_crossing_the_1012_close_are_not_forwarded_to_the_old_worker(servers: Any) -> None:
    """Probe 47: a client may send messages until it has sent its own close frame (RFC 6455 §5.5.1),
    so some cross the gateway's 1012. The app was told of the disconnect already (WS_DISCONNECT, after
    which nothing follows for the stream: SPEC §4), so they are dropped; forwarded, they were a
    protocol error that cut the old worker off (its other requests 502, no lifespan shutdown)."""
    from test_ws_protocol import close_payload, encode_frame, raw_open, read_close, read_data_frame

    server = servers.start("conformance9_app:app", app_dir=APPS_DIR, workers=1,
                           extra_args=["--timeout-graceful-shutdown", "5"])
    old = httpx.get(f"{server.url}/pid", timeout=5).text
    conn = raw_open(server, "/ws/hold?linger", timeout=15)[0]  # (its stream still open after the disconnect)
    with conn:
        assert read_data_frame(conn).payload == b"ready"
        server.process.send_signal(signal.SIGHUP)
        assert read_close(conn, reply=False).close_code == 1012
        for i in range(3):
            conn.send(encode_frame(0x1, f"late {i}".encode()))
        conn.send(encode_frame(0x8, close_payload(1000)))
    assert wait_for(lambda: f"lifespan shutdown pid {old}" in server.stderr(), 10), server.stderr()[-3000:]
    assert "protocol error" not in server.stderr(), server.stderr()[-3000:]
    assert "hold: websocket.disconnect 1012" in server.stderr()


def test_sighup_with_a_slot_that_cannot_start_reloads_the_others(servers: Any, tmp_path: Path) -> None:
    # One worker died and its restarts fail (a dependency down: the app exits at import): SIGHUP
    # does not wait on that slot. It completes (the healthy worker is kept: its replacement fails
    # the same way), the control signals keep working, and once the app can start again a reload
    # replaces the old worker and the slot comes back.
    broken = tmp_path / "broken"
    (tmp_path / "flaky_app.py").write_text(
        "import os, sys\n"
        f"if os.path.exists({str(broken)!r}):\n"
        "    sys.exit(1)\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': str(os.getpid()).encode()})\n"
    )
    address = f"127.0.0.1:{free_port()}"
    server = servers.start("flaky_app:app", app_dir=tmp_path, workers=2,
                           extra_args=["--lifespan", "off", "--metrics-address", address])
    before = children(server.process.pid)
    assert len(before) == 2
    broken.write_text("")
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    assert wait_for(lambda: "worker failed to start" in server.stderr(), 10), server.stderr()[-2000:]
    # The crash loop shows in the metrics: one death, then failed starts (not restarts).
    start_failures = lambda: metric(httpx.get(f"http://{address}/metrics", timeout=5).text,  # noqa: E731
                                    "asgi_gateway_worker_start_failures_total")
    assert wait_for(lambda: (start_failures() or 0) >= 2, 10), server.stderr()[-2000:]
    scraped = httpx.get(f"http://{address}/metrics", timeout=5).text
    assert metric(scraped, "asgi_gateway_worker_restarts_total", reason="died") == 1, scraped
    server.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload complete" in server.stderr(), 10), server.stderr()[-3000:]
    survivor = (before - {victim}).pop()
    assert survivor in children(server.process.pid)  # (a deploy that cannot start keeps the old worker)
    # A reload's failed replacement is not retried by itself (the next reload tries again): the line
    # promises no retry.
    failed = [l for l in server.stderr().splitlines() if "replacement worker failed to start" in l]
    assert failed and all("reason=reload" in l and "retry_in" not in l for l in failed), failed
    assert httpx.get(f"{server.url}/", timeout=5).text == str(survivor)
    broken.unlink()
    server.process.send_signal(signal.SIGHUP)
    now = wait_for(lambda: (lambda c: c if len(c) == 2 and survivor not in c else None)(children(server.process.pid)), 20)
    assert now, (children(server.process.pid), server.stderr()[-3000:])
    server.process.send_signal(signal.SIGTTIN)
    assert wait_for(lambda: len(children(server.process.pid)) == 3, 20), server.stderr()[-3000:]


@pytest.mark.parametrize("how", ["exit-7", "sigkill"])
def test_worker_death_is_logged_with_its_exit_status_or_signal(servers: Any, how: str) -> None:
    # Told apart in the log: an app's sys.exit/os._exit, and a kill (the OOM killer's SIGKILL).
    server = servers.start("conformance9_app:app", app_dir=APPS_DIR, workers=1)
    pid = int(httpx.get(f"{server.url}/pid", timeout=5).text)
    if how == "exit-7":
        assert httpx.get(f"{server.url}/exit", timeout=10).status_code == 502
        expected = "exit status 7"
    else:
        os.kill(pid, signal.SIGKILL)
        expected = "killed by SIGKILL (killed)"
    line = wait_for(lambda: next((l for l in server.stderr().splitlines() if "worker died" in l), None), 10)
    assert line and expected in line and str(pid) in line, (line, server.stderr()[-2000:])


def test_max_requests_with_jitter_recycles_workers_without_a_failed_request(servers: Any) -> None:
    server = servers.start(
        "testapp:app", app_dir=APPS_DIR, workers=2,
        extra_args=["--limit-max-requests", "50", "--limit-max-requests-jitter", "10"],
    )
    with Load(server.url, "/_/pid", 8) as load:
        # The pids change over time: 5 workers means both slots were recycled, one of them twice.
        assert wait_for(lambda: len(load.pids()) >= 5, 15), (load.pids(), server.stderr()[-3000:])
        time.sleep(0.3)
    assert load.failures() == []
    ordered = [int(r.body) for r in sorted(load.snapshot(), key=lambda r: r.ended)]
    assert not set(ordered[:50]) & set(ordered[-50:]), Counter(ordered)
    assert "reason=max-requests" in server.stderr()


SLOW_START_APP = """
import asyncio, os
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if os.path.exists(os.environ["SLOW_FLAG"]):
                    await asyncio.sleep(3)  # the replacements' start-up
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
"""


def test_a_worker_past_max_requests_takes_none_while_another_is_ready(servers: Any, tmp_path: Path) -> None:
    # Probe 59: --limit-max-requests 5 with two workers whose replacements take 3 s to start. The
    # first worker to reach 5 gets no more requests while the other, under its limit, is ready
    # (README: it serves on only while no other worker is ready).
    (tmp_path / "slow_start_app.py").write_text(SLOW_START_APP)
    flag = tmp_path / "slow.flag"
    server = servers.start("slow_start_app:app", app_dir=tmp_path, workers=2, env={**os.environ, "SLOW_FLAG": str(flag)},
                           extra_args=["--limit-max-requests", "5"])
    flag.touch()  # (the first two started at once)
    with httpx.Client(timeout=10) as client:
        pids = [int(client.get(f"{server.url}/").text) for _ in range(9)]
    counts = Counter(pids)
    assert len(counts) == 2 and sorted(counts.values()) == [4, 5], (pids, server.stderr()[-2000:])


FLAKY_IMPORT_APP = """
import os
if os.path.exists(os.environ["BROKEN_FLAG"]):
    raise ImportError("broken for the moment")
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
"""


def test_max_requests_recycles_again_after_a_replacement_that_failed_to_start(servers: Any, tmp_path: Path) -> None:
    # Probe 43: the limit asked for a replacement once, when it was reached; when that replacement
    # failed to start (the app's import broken for a moment), the old worker served on forever.
    # It is asked for again (each second, as for --workers-lifetime and --workers-max-rss).
    (tmp_path / "flaky_app.py").write_text(FLAKY_IMPORT_APP)
    flag = tmp_path / "broken.flag"
    address = f"127.0.0.1:{free_port()}"
    server = servers.start("flaky_app:app", app_dir=tmp_path, workers=1, env={**os.environ, "BROKEN_FLAG": str(flag)},
                           extra_args=["--limit-max-requests", "20", "--metrics-address", address])
    with httpx.Client(timeout=10) as client:
        first = client.get(f"{server.url}/").text
        flag.touch()  # the replacement will fail to import
        for _ in range(25):
            assert client.get(f"{server.url}/").status_code == 200
        assert wait_for(lambda: "replacement worker failed to start" in server.stderr(), 15), server.stderr()[-3000:]
        # Tried again, but not each second: after 1 s, then 2 s more, ... (probe 44: a broken
        # import logged its traceback every second).
        time.sleep(6)
        failed = server.stderr().count("replacement worker failed to start")
        assert 2 <= failed <= 3, (failed, server.stderr()[-3000:])
        assert "retry_in=" in next(l for l in server.stderr().splitlines() if "replacement worker failed" in l)
        scraped = httpx.get(f"http://{address}/metrics", timeout=5).text
        # (one more may have failed between the two reads)
        assert metric(scraped, "asgi_gateway_worker_start_failures_total") in (failed, failed + 1), scraped
        assert metric(scraped, "asgi_gateway_worker_restarts_total", reason="max-requests") == 0, scraped
        flag.unlink()  # the app imports again
        assert wait_for(lambda: client.get(f"{server.url}/").text != first, 15), server.stderr()[-3000:]
    assert server.stderr().count("reason=max-requests") >= 2, server.stderr()[-3000:]


def test_a_503_for_want_of_a_ready_worker_is_explained_in_the_log(servers: Any, tmp_path: Path) -> None:
    # Probe 45: the access log showed the 503, and nothing said why.
    (tmp_path / "flaky_app.py").write_text(FLAKY_IMPORT_APP)
    flag = tmp_path / "broken.flag"
    server = servers.start("flaky_app:app", app_dir=tmp_path, workers=1, env={**os.environ, "BROKEN_FLAG": str(flag)},
                           extra_args=["--timeout-worker-acquire", "0.5"])
    pid = int(httpx.get(f"{server.url}/", timeout=5).text)
    flag.touch()  # its replacement cannot start
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: "worker failed to start" in server.stderr(), 10), server.stderr()[-3000:]
    assert httpx.get(f"{server.url}/", timeout=5).status_code == 503
    line = wait_for(lambda: next((l for l in server.stderr().splitlines() if "no worker ready" in l), None), 3)
    assert line and "--timeout-worker-acquire" in line and "503" in line, server.stderr()[-3000:]


SLOW_START_APP = """
import asyncio, os
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.sleep(1.5)
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
"""


def test_a_recycled_workers_replacement_is_not_recycled_by_a_request_about_the_old_one(
    servers: Any, tmp_path: Path
) -> None:
    # --workers-lifetime asks again each second while the worker is past its age; asked while its
    # replacement was starting (1.5 s here), the request waited and then replaced the brand-new
    # worker as soon as it was ready. A request is about one worker now: a stale one is dropped.
    (tmp_path / "slow_start_app.py").write_text(SLOW_START_APP)
    server = servers.start("slow_start_app:app", app_dir=tmp_path, workers=1, extra_args=["--workers-lifetime", "3"])
    ready: dict[int, float] = {}  # pid -> when its "worker replaced" line appeared
    lived: list[float] = []  # for each replaced worker that we saw start: seconds from ready to replaced
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline and len(lived) < 2:
        for match in re.finditer(r"worker replaced old_pid=(\d+) pid=(\d+)", server.stderr()):
            old, new = int(match.group(1)), int(match.group(2))
            if new not in ready:
                ready[new] = time.monotonic()
                if old in ready:
                    lived.append(ready[new] - ready[old])
        time.sleep(0.05)
    assert len(lived) >= 2, server.stderr()[-3000:]
    # A worker lives 3 s from its start, 1.5 s of which is startup: ready for about 1.5 s at least,
    # then replaced when its successor is ready, 1.5 s later. Replaced by a stale request, it was
    # ready for the successor's 1.5 s only.
    assert min(lived) > 2.3, (lived, server.stderr()[-3000:])


# --- shutdown ---------------------------------------------------------------------------------


def test_a_request_cut_when_its_worker_is_replaced_gets_503(servers: Any) -> None:
    # A request still running when its worker, being replaced (SIGHUP here), has had its grace is
    # cancelled by the worker: 503 (service unavailable), as the requests a shutdown cuts; it was
    # the 500 of an app that sent no response (probe 43).
    server = servers.start("testapp:app", app_dir=APPS_DIR, workers=1, extra_args=["--timeout-graceful-shutdown", "1"])
    thread, out = request_in_thread(f"{server.url}/_/slow?seconds=6")
    time.sleep(0.3)
    server.process.send_signal(signal.SIGHUP)
    thread.join(15)
    assert out["response"].status_code == 503, (out, server.stderr()[-3000:])
    assert "the worker stopped before the app answered" in server.stderr()


def test_pool_signals_during_the_graceful_shutdown_change_nothing(servers: Any) -> None:
    # Probe 43: SIGHUP or SIGTTIN while the shutdown waited for a slow request started new workers,
    # only for them to be stopped again. They are now ignored (logged).
    server = servers.start("testapp:app", app_dir=APPS_DIR, workers=1)
    (worker,) = children(server.process.pid)
    thread, out = request_in_thread(f"{server.url}/_/slow?seconds=3")
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    for sig in (signal.SIGHUP, signal.SIGTTIN):
        server.process.send_signal(sig)
    assert wait_for(lambda: server.stderr().count("the signal changes nothing") == 2, 5), server.stderr()[-3000:]
    time.sleep(0.5)
    assert children(server.process.pid) <= {worker}, server.stderr()[-3000:]
    thread.join(10)
    assert out["response"].status_code == 200
    assert server.process.wait(15) == 0


def test_sigterm_lets_slow_inflight_requests_finish_and_refuses_new_connections(servers: Any, tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    server = servers.start("lifespan_app:app", env=lifespan_env(log))
    requests = [request_in_thread(f"{server.url}/slow?seconds=2&tag={i}") for i in range(5)]
    assert wait_for(lambda: names(log).count("request-start") == 5, 5), names(log)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2).close()
    for thread, out in requests:
        thread.join(10)
        assert "error" not in out, f"an in-flight request failed: {out.get('error')!r}"
        assert out["response"].status_code == 200
    assert server.process.wait(10) == 0
    assert time.monotonic() - signalled < 4
    assert names(log)[-1] == "shutdown"


def test_graceful_shutdown_timeout_bounds_the_exit(servers: Any, tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    server = servers.start("lifespan_app:app", env=lifespan_env(log), extra_args=["--timeout-graceful-shutdown", "1"])
    thread, out = request_in_thread(f"{server.url}/slow?seconds=5", timeout=10)
    assert wait_for(lambda: "request-start" in names(log), 5)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(6)
    except subprocess.TimeoutExpired:
        pass
    elapsed = time.monotonic() - signalled
    thread.join(10)
    assert elapsed < 3, (
        f"with --timeout-graceful-shutdown 1 the gateway took {elapsed:.1f} s to exit "
        f"(a 5 s request was in flight)\n{server.stderr()}"
    )
    # The request whose response had not started gets 503 (uvicorn: 500 from the cancelled app),
    # not a connection closed without a response.
    assert "error" not in out, f"the in-flight request failed: {out.get('error')!r}"
    assert out["response"].status_code == 503
    assert out["response"].headers["connection"] == "close"


# --- limits -----------------------------------------------------------------------------------


def test_limit_concurrency_answers_503_at_once(servers: Any, tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    server = servers.start("lifespan_app:app", env=lifespan_env(log), extra_args=["--limit-concurrency", "2"])
    slow = [request_in_thread(f"{server.url}/slow?seconds=2&tag={i}") for i in range(2)]
    assert wait_for(lambda: names(log).count("request-start") == 2, 5)
    started = time.monotonic()
    response = httpx.get(f"{server.url}/third", timeout=5)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed < 0.5, f"the 503 took {elapsed:.2f} s"
    for thread, out in slow:
        thread.join(10)
        assert out["response"].status_code == 200
    assert httpx.get(f"{server.url}/fourth", timeout=5).status_code == 200


# --- --reload ---------------------------------------------------------------------------------

RELOAD_APP = '''
TEXT = {text!r}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = TEXT.encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
'''


def test_reload_picks_up_edits_and_survives_a_syntax_error(servers: Any, tmp_path: Path) -> None:
    app_dir = tmp_path / "reload_app_dir"
    app_dir.mkdir()
    module = app_dir / "reload_app.py"
    module.write_text(RELOAD_APP.format(text="version one"))
    server = servers.start(
        "reload_app:app", app_dir=app_dir,
        extra_args=["--reload", "--reload-dir", str(app_dir), "--reload-delay", "0.1"],
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )

    def texts(load: Load, since: float) -> set[str]:
        return {r.body for r in load.snapshot() if r.status == 200 and r.started >= since}

    with Load(server.url, "/", 2) as load:
        assert wait_for(lambda: texts(load, 0) == {"version one"}, 5)
        edited = time.monotonic()
        module.write_text(RELOAD_APP.format(text="version two, edited"))
        assert wait_for(lambda: "version two, edited" in texts(load, edited), 8), server.stderr()

        broken = time.monotonic()
        module.write_text(RELOAD_APP.format(text="version three") + "\ndef broken(:\n")
        assert wait_for(lambda: "SyntaxError" in server.stderr(), 8), server.stderr()
        time.sleep(0.5)
        assert texts(load, broken) == {"version two, edited"}  # the old worker keeps serving

        fixed = time.monotonic()
        module.write_text(RELOAD_APP.format(text="version four, fixed"))
        assert wait_for(lambda: "version four, fixed" in texts(load, fixed), 8), server.stderr()
        time.sleep(0.2)
    assert load.failures() == []
    assert server.process.poll() is None


@contextmanager
def reload_gateway(tmp_path: Path, name: str, source: str) -> Iterator[tuple[subprocess.Popen[bytes], Path, Callable[[], str], int]]:
    """A gateway with --reload on the app module ``name`` (its first source given), started without
    waiting for it to listen: (process, the module's path, its log so far, its port)."""
    app_dir = tmp_path / "reload_app_dir"
    app_dir.mkdir()
    module = app_dir / f"{name}.py"
    module.write_text(source)
    stderr_path = tmp_path / "stderr"
    port = free_port()
    with raw_gateway(f"{name}:app", stderr_path, "--app-dir", str(app_dir), "--port", str(port), "--reload",
                     "--reload-dir", str(app_dir), "--reload-delay", "0.1",
                     env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}) as process:
        yield process, module, lambda: stderr_path.read_text(errors="replace"), port


def test_reload_waits_for_an_app_that_does_not_load_at_startup(gateway_binary: None, tmp_path: Path) -> None:
    # uvicorn's reloader keeps running when the app fails to import at startup, and loads it after
    # the next change: the development server is not ended by the first typo.
    with reload_gateway(tmp_path, "reload_app", RELOAD_APP.format(text="version one") + "\ndef broken(:\n") as (
            process, module, log, port):
        assert wait_for(lambda: "waiting for a change" in log(), 10), log()
        assert "SyntaxError" in log()
        time.sleep(0.3)
        assert process.poll() is None, log()
        module.write_text(RELOAD_APP.format(text="version two, fixed"))
        assert wait_for(lambda: "listening on" in log(), 10), log()
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "version two, fixed"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


SLOW_STARTUP_APP = """
import asyncio
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await asyncio.sleep(2)  # a database slow to answer
        if {fails}:
            await send({{"type": "lifespan.startup.failed", "message": "db down"}})
            return
        await send({{"type": "lifespan.startup.complete"}})
        await receive()
        await send({{"type": "lifespan.shutdown.complete"}})
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{text}"}})
"""


def test_reload_sees_a_fix_saved_while_the_failing_start_runs(gateway_binary: None, tmp_path: Path) -> None:
    # Probe 48: the files were watched only once the start had failed, so a fix saved during a slow
    # failing startup was never loaded (uvicorn's reloader watches throughout).
    with reload_gateway(tmp_path, "race_app", SLOW_STARTUP_APP.format(fails=True, text="broken")) as (
            process, module, log, port):
        time.sleep(1)  # the lifespan startup is running (it fails 2 s in)
        assert "listening on" not in log() and "db down" not in log(), log()
        module.write_text(SLOW_STARTUP_APP.format(fails=False, text="fixed"))
        assert wait_for(lambda: "listening on" in log(), 15), log()
        assert "db down" in log()
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "fixed"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


def test_reload_applies_a_change_saved_while_a_good_start_runs(servers: Any, tmp_path: Path) -> None:
    # The workers imported the code before the change: they are replaced once the gateway serves.
    app_dir = tmp_path / "reload_app_dir"
    app_dir.mkdir()
    module = app_dir / "slow_app.py"
    module.write_text(SLOW_STARTUP_APP.format(fails=False, text="old"))

    def edit_soon() -> None:
        time.sleep(1)
        module.write_text(SLOW_STARTUP_APP.format(fails=False, text="new"))

    editor = threading.Thread(target=edit_soon)
    editor.start()
    server = servers.start("slow_app:app", app_dir=app_dir,
                           extra_args=["--reload", "--reload-dir", str(app_dir), "--reload-delay", "0.1"],
                           env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    editor.join()
    assert wait_for(lambda: httpx.get(f"{server.url}/", timeout=5).text == "new", 15), server.stderr()[-3000:]
    assert "changes detected during the startup" in server.stderr()


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_endpoints_count_requests_workers_restarts_and_inflight(servers: Any) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = servers.start("testapp:app", app_dir=APPS_DIR, workers=2, extra_args=["--metrics-address", address])
    base = f"http://{address}"

    def scrape() -> str:
        response = httpx.get(f"{base}/metrics", timeout=5)
        assert response.status_code == 200
        return response.text

    def requests_2xx() -> float | None:
        return metric(scrape(), "asgi_gateway_requests_total", method="GET", status="2xx")

    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    assert metric(scrape(), "asgi_gateway_workers", state="ready") == 2

    before = requests_2xx()
    assert before is not None
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(7):
            assert client.get("/_/pid").status_code == 200
    wait_for(lambda: requests_2xx() == before + 7, 2)
    time.sleep(0.2)
    assert requests_2xx() == before + 7

    assert metric(scrape(), "asgi_gateway_requests_in_flight") == 0
    thread, out = request_in_thread(f"{server.url}/_/slow?seconds=1.5")
    assert wait_for(lambda: metric(scrape(), "asgi_gateway_requests_in_flight") == 1, 1.2)
    thread.join(10)
    assert out["response"].status_code == 200
    assert wait_for(lambda: metric(scrape(), "asgi_gateway_requests_in_flight") == 0, 2)

    assert metric(scrape(), "asgi_gateway_worker_restarts_total", reason="died") == 0
    os.kill(min(children(server.process.pid)), signal.SIGKILL)
    assert wait_for(lambda: metric(scrape(), "asgi_gateway_worker_restarts_total", reason="died") == 1, 5), scrape()
    assert wait_for(lambda: metric(scrape(), "asgi_gateway_workers", state="ready") == 2, 5)
    assert metric(scrape(), "asgi_gateway_worker_restarts_total", reason="died") == 1


# --- SIGTTIN / SIGTTOU ------------------------------------------------------------------------


def test_sigttin_and_sigttou_add_and_remove_workers(servers: Any) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = servers.start("testapp:app", app_dir=APPS_DIR, workers=2, extra_args=["--metrics-address", address])

    def ready() -> float | None:
        return metric(httpx.get(f"http://{address}/metrics", timeout=5).text, "asgi_gateway_workers", state="ready")

    def settles(count: int) -> bool:
        return bool(wait_for(lambda: ready() == count and len(children(server.process.pid)) == count, 5))

    assert settles(2)
    server.process.send_signal(signal.SIGTTIN)
    assert settles(3), (ready(), children(server.process.pid))
    server.process.send_signal(signal.SIGTTOU)
    assert settles(2), (ready(), children(server.process.pid))
    server.process.send_signal(signal.SIGTTOU)
    assert settles(1), (ready(), children(server.process.pid))
    server.process.send_signal(signal.SIGTTOU)  # the last worker stays
    time.sleep(0.5)
    assert settles(1)
    assert "not removing the last worker" in server.stderr()
    assert httpx.get(f"{server.url}/_/pid", timeout=5).status_code == 200
