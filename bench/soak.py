"""Soak test: the gateway under mixed load for N minutes while its workers get SIGKILLed.

Not a pytest test. Run from the repository root (after `make build venv`):

    .venv/bin/python bench/soak.py --minutes 10
    .venv/bin/python bench/soak.py --minutes 1 --procs 2 --threads 12

It starts `bin/asgi-gateway run soak_app:app --workers 2` on 127.0.0.1 (a free port) with
ASGI_GATEWAY_PPROF on another free 127.0.0.1 port, and drives it from `--procs` processes of
`--threads` threads each, every thread looping over a weighted mix of:

    plain    keep-alive GET /plain
    upload   keep-alive POST /upload with 64 KiB (answer: size and SHA-256, checked)
    stream   GET /stream: 32 x 16 KiB pieces, no content-length, read to the end and checked
    ws       a WebSocket session on /ws: 10 echoes of text and binary messages, then close
    quit     GET /stream of 64 x 16 KiB, read ~20 KiB, then disconnect (half of them with a reset)

Every minute (first at half a minute) it SIGKILLs one worker, alternating between them. Each
response names its worker (x-worker-pid; the WebSocket's first message), so a failure is
attributed to a killed worker when it came from that worker, or when it is a 502 or a broken
connection within --kill-window seconds after a kill. At the end it prints the requests by kind
and outcome, the failures (attributed to kills, or not), and the gateway's goroutines, open fds
and RSS at the start and end (and the peak). Load only ever goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import http.client
import json
import multiprocessing
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the only address load is ever sent to

UPLOAD = os.urandom(64 << 10)
UPLOAD_ANSWER = f"{len(UPLOAD)} {hashlib.sha256(UPLOAD).hexdigest()}".encode()
STREAM_N, STREAM_SIZE = 32, 16384
WEIGHTS = {"plain": 45, "upload": 15, "stream": 12, "ws": 10, "quit": 18}


# --- the gateway ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_gateway(args: argparse.Namespace, log_path: Path, pprof_port: int) -> tuple[subprocess.Popen, int]:
    command = [
        str(args.binary), "run", "soak_app:app", "--app-dir", str(ROOT / "bench"), "--python", args.python,
        "--host", HOST, "--port", "0", "--workers", str(args.workers), "--no-access-log", "--log-level", "info",
    ]
    env = dict(os.environ, ASGI_GATEWAY_PPROF=f"{HOST}:{pprof_port}")
    log = open(log_path, "wb")
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    sys.exit(f"the gateway did not start:\n{log_path.read_text(errors='replace')[-3000:]}")


def worker_pids(gateway_pid: int) -> list[int]:
    """The gateway's child processes (its workers), from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == gateway_pid and fields[0] != "Z":
            pids.append(int(entry))
    return sorted(pids)


def gateway_stats(pid: int, pprof_port: int) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    try:
        with urllib.request.urlopen(f"http://{HOST}:{pprof_port}/debug/pprof/goroutine?debug=1", timeout=10) as resp:
            first = resp.readline().decode().strip()  # "goroutine profile: total N"
        stats["goroutines"] = int(first.rsplit(" ", 1)[1])
    except Exception as exc:  # noqa: BLE001
        stats["goroutines"] = f"n/a ({exc})"
    stats["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    status = Path(f"/proc/{pid}/status").read_text()
    stats["rss_mib"] = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024
    stats["threads"] = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    return stats


# --- load (runs in the load processes) ------------------------------------------------------------


class Client:
    """One load thread: keep-alive connection for plain/upload, new connections otherwise."""

    def __init__(self, port: int, results: dict[str, Any], rng: random.Random) -> None:
        self.port = port
        self.results = results
        self.rng = rng
        self.conn: http.client.HTTPConnection | None = None
        self.last_used = 0.0

    def record(self, kind: str, started: float, ok: bool, pid: str | None, error: str = "") -> None:
        r = self.results
        r["count"][f"{kind} {'ok' if ok else 'failed'}"] += 1
        if ok:
            r["ok_by_pid"][pid or "?"] += 1
        else:
            r["failures"].append({"kind": kind, "start": started, "end": time.time(), "pid": pid, "error": error[:200]})

    def keepalive(self) -> http.client.HTTPConnection:
        if self.conn is not None and time.monotonic() - self.last_used > 3:
            self.conn.close()  # the server may be closing it (keep-alive timeout 5 s)
            self.conn = None
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        return self.conn

    def http_keepalive(self, kind: str, method: str, path: str, body: bytes | None, expect: bytes) -> None:
        started = time.time()
        pid = None
        try:
            conn = self.keepalive()
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            pid = resp.getheader("x-worker-pid")
            data = resp.read()
            self.last_used = time.monotonic()
            if resp.will_close:
                conn.close()
                self.conn = None
            if resp.status != 200:
                self.record(kind, started, False, pid, f"status {resp.status}")
            elif data != expect:
                self.record(kind, started, False, pid, f"wrong body {data[:60]!r}")
            else:
                self.record(kind, started, True, pid)
        except Exception as exc:  # noqa: BLE001
            if self.conn is not None:
                self.conn.close()
                self.conn = None
            self.record(kind, started, False, pid, f"{type(exc).__name__}: {exc}")

    def stream(self) -> None:
        started = time.time()
        pid = None
        try:
            conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
            try:
                conn.request("GET", f"/stream?n={STREAM_N}&size={STREAM_SIZE}&delay=0.001")
                resp = conn.getresponse()
                pid = resp.getheader("x-worker-pid")
                data = resp.read()
            finally:
                conn.close()
            if resp.status != 200:
                self.record("stream", started, False, pid, f"status {resp.status}")
            elif len(data) != STREAM_N * STREAM_SIZE:
                self.record("stream", started, False, pid, f"short body {len(data)}")
            else:
                self.record("stream", started, True, pid)
        except Exception as exc:  # noqa: BLE001
            self.record("stream", started, False, pid, f"{type(exc).__name__}: {exc}")

    def quit(self) -> None:
        """Reads the head and ~20 KiB of a long stream, then goes away. OK if the head was a 200."""
        started = time.time()
        pid = None
        try:
            sock = socket.create_connection((HOST, self.port), timeout=30)
            try:
                sock.sendall(b"GET /stream?n=64&size=16384&delay=0.002 HTTP/1.1\r\nHost: soak\r\n\r\n")
                data = b""
                while len(data) < 20000:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    if b"\r\n\r\n" in data and not data.startswith(b"HTTP/1.1 200 "):
                        break  # an error answer (a 502 keeps the connection open): done
                head = data.split(b"\r\n\r\n", 1)[0]
                match = re.search(rb"\r\nx-worker-pid: (\d+)", head)
                pid = match.group(1).decode() if match else None
                if self.rng.random() < 0.5:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            finally:
                sock.close()
            if head.startswith(b"HTTP/1.1 200 "):
                self.record("quit", started, True, pid)
            else:
                self.record("quit", started, False, pid, f"head {head[:40]!r}")
        except Exception as exc:  # noqa: BLE001
            self.record("quit", started, False, pid, f"{type(exc).__name__}: {exc}")

    def ws(self) -> None:
        from websockets.sync.client import connect  # imported in the load process only

        started = time.time()
        pid = None
        try:
            with connect(f"ws://{HOST}:{self.port}/ws", open_timeout=30, close_timeout=10, max_size=1 << 20) as ws:
                hello = ws.recv(timeout=30)
                pid = str(hello).split()[1]
                for index in range(10):
                    if index % 2:
                        message: Any = os.urandom(self.rng.randint(1, 16384))
                    else:
                        message = f"echo {index} " + "w" * self.rng.randint(0, 4000)
                    ws.send(message)
                    if ws.recv(timeout=30) != message:
                        raise AssertionError("echo mismatch")
            self.record("ws", started, True, pid)
        except Exception as exc:  # noqa: BLE001
            self.record("ws", started, False, pid, f"{type(exc).__name__}: {exc}")

    def run(self, deadline: float) -> None:
        kinds = list(WEIGHTS)
        weights = [WEIGHTS[k] for k in kinds]
        while time.time() < deadline:
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "plain":
                self.http_keepalive("plain", "GET", "/plain", None, b"Hello, World!")
            elif kind == "upload":
                self.http_keepalive("upload", "POST", "/upload", UPLOAD, UPLOAD_ANSWER)
            elif kind == "stream":
                self.stream()
            elif kind == "ws":
                self.ws()
            else:
                self.quit()
        if self.conn is not None:
            self.conn.close()


def load_process(port: int, threads: int, deadline: float, seed: int, out: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results: dict[str, Any] = {"count": collections.Counter(), "ok_by_pid": collections.Counter(), "failures": []}
    lock = threading.Lock()
    per_thread = []

    def body(index: int) -> None:
        local: dict[str, Any] = {"count": collections.Counter(), "ok_by_pid": collections.Counter(), "failures": []}
        Client(port, local, random.Random(seed * 1000 + index)).run(deadline)
        with lock:
            per_thread.append(local)

    workers = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(max(1.0, deadline - time.time() + 60))
    for local in per_thread:
        results["count"].update(local["count"])
        results["ok_by_pid"].update(local["ok_by_pid"])
        results["failures"].extend(local["failures"])
    out.put(json.dumps({"count": results["count"], "ok_by_pid": results["ok_by_pid"], "failures": results["failures"],
                        "threads_done": len(per_thread), "threads": threads}))


# --- main -----------------------------------------------------------------------------------------


def attribute(failure: dict[str, Any], kills: list[tuple[float, int]], window: float) -> str:
    killed = {str(pid) for _, pid in kills}
    if failure["pid"] is not None and failure["pid"] in killed:
        # Served by a worker that was killed: did it fail around the kill?
        for when, pid in kills:
            if str(pid) == failure["pid"] and failure["start"] - 1 <= when <= failure["end"] + 1:
                return "on a killed worker (tagged with its pid)"
    for when, _ in kills:
        # The request was under way when a worker was killed, or started just after.
        if failure["start"] <= when + window and failure["end"] >= when - 0.5:
            return f"in flight at a kill or started within {window:g} s after (untagged)"
    return "unexplained"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--procs", type=int, default=2, help="load processes")
    parser.add_argument("--threads", type=int, default=12, help="threads per load process")
    parser.add_argument("--kill-interval", type=float, default=60.0, help="seconds between worker kills")
    parser.add_argument("--kill-window", type=float, default=5.0, help="seconds after a kill that failures are blamed on it")
    parser.add_argument("--settle", type=float, default=7.0, help="seconds to wait after the load before the end stats")
    parser.add_argument("--binary", type=Path, default=ROOT / "bin" / "asgi-gateway")
    default_python = ROOT / ".venv" / "bin" / "python"
    parser.add_argument("--python", default=str(default_python if default_python.exists() else sys.executable))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    log_path = workdir / "gateway.log"
    pprof_port = free_port()
    gateway, port = start_gateway(args, log_path, pprof_port)
    print(f"gateway pid {gateway.pid} on http://{HOST}:{port}, pprof on {HOST}:{pprof_port}, log {log_path}", flush=True)
    try:
        time.sleep(1.0)
        start_stats = gateway_stats(gateway.pid, pprof_port)
        start_workers = worker_pids(gateway.pid)
        print(f"start: {start_stats}, workers {start_workers}", flush=True)

        duration = args.minutes * 60
        t0 = time.time()
        deadline = t0 + duration
        queue: Any = multiprocessing.get_context("fork").Queue()
        procs = [
            multiprocessing.get_context("fork").Process(
                target=load_process, args=(port, args.threads, deadline, seed, queue), daemon=True
            )
            for seed in range(args.procs)
        ]
        for proc in procs:
            proc.start()

        kills: list[tuple[float, int]] = []
        next_kill = t0 + args.kill_interval / 2
        peak = dict(start_stats)
        slot = 0
        last_report = t0
        while time.time() < deadline:
            time.sleep(0.25)
            now = time.time()
            if now >= next_kill and now < deadline - 2:
                pids = worker_pids(gateway.pid)
                if pids:
                    victim = pids[slot % len(pids)]
                    slot += 1
                    os.kill(victim, signal.SIGKILL)
                    kills.append((time.time(), victim))
                    print(f"[{now - t0:6.1f} s] SIGKILL worker {victim} (workers were {pids})", flush=True)
                next_kill += args.kill_interval
            if now - last_report >= 5:
                last_report = now
                stats = gateway_stats(gateway.pid, pprof_port)
                for key in ("goroutines", "fds", "rss_mib", "threads"):
                    if isinstance(stats[key], (int, float)) and stats[key] > peak.get(key, 0):
                        peak[key] = stats[key]
                print(f"[{now - t0:6.1f} s] {stats}", flush=True)

        results = []
        for _ in procs:
            try:
                results.append(json.loads(queue.get(timeout=90)))
            except Exception:  # noqa: BLE001
                print("a load process did not report", flush=True)
        for proc in procs:
            proc.join(10)
        elapsed = time.time() - t0

        time.sleep(args.settle)  # idle keep-alive connections time out (5 s) before the end stats
        alive_after = None
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=10)
            conn.request("GET", "/plain")
            alive_after = conn.getresponse().status
            conn.close()
        except Exception as exc:  # noqa: BLE001
            alive_after = f"{type(exc).__name__}: {exc}"
        end_stats = gateway_stats(gateway.pid, pprof_port)
        end_workers = worker_pids(gateway.pid)
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()

    # --- report ---
    count: collections.Counter = collections.Counter()
    ok_by_pid: collections.Counter = collections.Counter()
    failures: list[dict[str, Any]] = []
    for r in results:
        count.update(r["count"])
        ok_by_pid.update(r["ok_by_pid"])
        failures.extend(r["failures"])
    total_ok = sum(v for k, v in count.items() if k.endswith(" ok"))
    total_failed = sum(v for k, v in count.items() if k.endswith(" failed"))
    log = log_path.read_text(errors="replace")

    print()
    print(f"=== soak summary: {elapsed:.0f} s, {args.workers} workers, {args.procs} x {args.threads} client threads ===")
    print(f"requests: {total_ok + total_failed} ({(total_ok + total_failed) / elapsed:.0f}/s), ok {total_ok}, failed {total_failed}")
    print("by kind:")
    for kind in WEIGHTS:
        print(f"  {kind:7s} ok {count.get(f'{kind} ok', 0):8d}   failed {count.get(f'{kind} failed', 0):6d}")
    print(f"ok by worker pid: {dict(ok_by_pid)}")
    print(f"kills: {[(round(when - t0, 1), pid) for when, pid in kills]}")
    blame = collections.Counter(attribute(f, kills, args.kill_window) for f in failures)
    print("failures by attribution:")
    for reason, n in blame.most_common():
        print(f"  {n:6d}  {reason}")
    if failures:
        by_second = collections.Counter(int(f["end"] - t0) for f in failures)
        print(f"failures by second since start: {dict(sorted(by_second.items()))}")
        errors = collections.Counter(f"{f['kind']}: {f['error']}" for f in failures)
        print("failure kinds (most common):")
        for error, n in errors.most_common(12):
            print(f"  {n:6d}  {error}")
    unexplained = [f for f in failures if attribute(f, kills, args.kill_window) == "unexplained"]
    for f in unexplained[:10]:
        print(f"  unexplained: t={f['end'] - t0:.1f} s {f}")
    print("gateway:        start        peak         end")
    for key in ("goroutines", "fds", "rss_mib", "threads"):
        s, p, e = start_stats.get(key), peak.get(key, "-"), end_stats.get(key)
        fmt = (lambda v: f"{v:.1f}" if isinstance(v, float) else str(v))
        print(f"  {key:12s} {fmt(s):>8s}   {fmt(p):>8s}   {fmt(e):>8s}")
    print(f"workers at start {start_workers}, at end {end_workers}")
    print(f"after the load: GET /plain -> {alive_after}")
    print(f"log: 'worker died' x{log.count('worker died')}, 'panicked' x{log.count('panicked')}, "
          f"'broke the protocol' x{log.count('broke the protocol')}, ERR lines x{len(re.findall(r' ERR ', log))}")
    print(f"gateway log: {log_path}")
    problems = []
    if unexplained:
        problems.append(f"{len(unexplained)} failures not explained by a kill")
    if alive_after != 200:
        problems.append("the gateway did not answer after the load")
    if len(end_workers) != args.workers:
        problems.append(f"{len(end_workers)} workers at the end")
    if "panicked" in log:
        problems.append("a panic in the log")
    if isinstance(start_stats["goroutines"], int) and isinstance(end_stats["goroutines"], int) \
            and end_stats["goroutines"] > start_stats["goroutines"] + 20:
        problems.append(f"goroutines grew {start_stats['goroutines']} -> {end_stats['goroutines']}")
    if end_stats["fds"] > start_stats["fds"] + 10:
        problems.append(f"fds grew {start_stats['fds']} -> {end_stats['fds']}")
    print("result:", "OK" if not problems else "PROBLEMS: " + "; ".join(problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
