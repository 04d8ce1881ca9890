#!/usr/bin/env python3
"""Side-by-side benchmark of asgi-gateway, uvicorn, granian, hypercorn and a raw Go floor.

Run it through bench/run.sh (`make bench`), which installs wrk and the pinned servers and
builds the Go tools first. See bench/README.md for what is measured and how.

For each workload, each round starts every server afresh (in an order rotated by round),
pinned to one core with one Python process, waits until it answers correctly, warms it up,
then drives it from a load generator pinned to the other core for the measured window,
reading the CPU time of the server's whole process tree from /proc/<pid>/stat around that
window and its memory from /proc/<pid>/status. Medians over the rounds go into one markdown
table per workload on stdout; every run's raw numbers go into bench/results/*.json.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
BIN = ROOT / "bin"
VENV_PY = Path(os.environ.get("BENCH_PYTHON", ROOT / ".venv" / "bin" / "python"))
GATEWAY = BIN / "asgi-gateway"
FLOOR = BIN / "bench-floor"
LOADGEN = BIN / "bench-loadgen"
HOST = "127.0.0.1"
MIB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Every server gets the same allocator settings (glibc): no trimming or mmap for blocks
# below 16 MiB, so that RSS reflects what the server holds rather than malloc's churn.
MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": str(16 * MIB), "MALLOC_MMAP_THRESHOLD_": str(16 * MIB)}

HELLO = b"Hello, World!"


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    kind: str  # "http", "ws-echo" or "ws-idle"
    app: str  # ASGI target, module:attribute, the module in bench/
    path: str
    conns: int = 64
    method: str = "GET"
    body_size: int = 0
    quick: bool = False


WORKLOADS = [
    Workload("plaintext", 'GET plaintext "Hello, World!"', "http", "apps:plaintext", "/", quick=True),
    Workload("get-10k", "GET 10 KB body", "http", "apps:get_10k", "/10k"),
    Workload("json", "Starlette JSON (GET /json)", "http", "json_app:app", "/json", quick=True),
    Workload("post-10k", "POST echo 10 KB", "http", "apps:echo", "/echo", method="POST", body_size=10 * 1024),
    Workload("post-64k", "POST echo 64 KiB", "http", "apps:echo", "/echo", method="POST", body_size=64 * 1024, quick=True),
    Workload("stream-1m", "Streaming 1 MiB in 64 KiB chunks", "http", "apps:stream", "/stream", quick=True),
    Workload("ws-echo", "WebSocket echo, 1 KB messages, 64 connections", "ws-echo", "apps:ws_echo", "/ws", quick=True),
    Workload("ws-idle", "Idle WebSockets (memory per connection)", "ws-idle", "apps:ws_echo", "/ws", quick=True),
    Workload("longpoll", "Long-poll: 512 concurrent requests sleeping 100 ms", "http", "apps:longpoll", "/sleep", conns=512, quick=True),
]
WORKLOADS_BY_NAME = {w.name: w for w in WORKLOADS}

SERVERS = ["asgi-gateway", "uvicorn", "granian", "hypercorn", "floor"]
# Run only when named with -s: asgi-gateway with its worker's C module off (PYTHON_WORKER_PURE=1), to
# measure what the module saves, side by side.
OPTIONAL_SERVERS = ["asgi-gateway-pure"]
GATEWAYS = ("asgi-gateway", "asgi-gateway-pure")
BASELINE = "uvicorn"


class RunError(Exception):
    """A server/workload combination that did not work: reported as n/a, never fatal."""


# --------------------------------------------------------------------------------------
# /proc: the server's process tree, its CPU time and memory


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])  # field 22: starttime


def process_tree(root: int) -> list[int]:
    children = _children_map()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


_kinds: dict[int, str] = {}


def process_kind(pid: int) -> str:
    """'python' for a process running the Python interpreter, else 'front' (Go: the gateway, the floor)."""
    kind = _kinds.get(pid)
    if kind is None:
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        except OSError:
            try:
                with open(f"/proc/{pid}/comm") as f:
                    exe = f.read().strip()
            except OSError:
                exe = ""
        kind = _kinds[pid] = "python" if exe.startswith("python") else "front"
    return kind


def cpu_snapshot(root: int) -> dict[int, tuple[str, int]]:
    """pid -> (kind, utime+stime+cutime+cstime in clock ticks) for the tree under root."""
    snap = {}
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
        ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        snap[pid] = (process_kind(pid), ticks)
    return snap


def cpu_delta(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds spent over the window, by kind of process."""
    out = {"front": 0.0, "python": 0.0}
    for pid, (kind, ticks) in after.items():
        prev = before.get(pid, (kind, 0))[1]
        out[kind] += max(ticks - prev, 0) / CLK_TCK
    out["total"] = out["front"] + out["python"]
    return out


def core_ticks(cpu: int | None) -> tuple[int, int]:
    """(busy, total) clock ticks of one core from /proc/stat (0, 0 when not pinned)."""
    if cpu is None:
        return 0, 0
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
                total = sum(v[:8])  # guest time is already counted in user
                return total - idle, total
    return 0, 0


class Window:
    """The measured window: the server tree's CPU by kind, and how busy its core was with anything else."""

    def __init__(self, root: int, cpu: int | None):
        self.root, self.cpu = root, cpu
        self.t0 = time.monotonic()
        self.core0 = core_ticks(cpu)
        self.before = cpu_snapshot(root)

    def close(self) -> dict:
        after = cpu_snapshot(self.root)
        core1 = core_ticks(self.cpu)
        seconds = time.monotonic() - self.t0
        cpu = cpu_delta(self.before, after)
        out = {"window_seconds": seconds, "cpu_seconds": cpu, "server_cpu_share": cpu["total"] / seconds}
        if self.cpu is not None:
            busy = (core1[0] - self.core0[0]) / CLK_TCK
            # Time the server's core spent on anything but the server: other sessions' work, interrupts.
            out["foreign_cpu_share"] = max(busy - cpu["total"], 0.0) / seconds
        return out


def status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_kib(root: int, key: str) -> int:
    return sum(status_kib(pid, key) for pid in process_tree(root))


class RssSampler(threading.Thread):
    """Samples the tree's summed VmRSS every 200 ms; keeps the maximum."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root, self.peak_kib = root, 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.peak_kib = max(self.peak_kib, tree_kib(self.root, "VmRSS"))
            self._halt.wait(0.2)

    def stop(self):
        self._halt.set()
        self.join()


# --------------------------------------------------------------------------------------
# Servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_command(server: str, wl: Workload, port: int) -> tuple[list[str], dict[str, str]]:
    py, app = str(VENV_PY), wl.app
    env = {"PYTHONPATH": str(BENCH)}
    if server in GATEWAYS:
        if server == "asgi-gateway-pure":
            env["PYTHON_WORKER_PURE"] = "1"
        # The worker package, in case the venv does not have it installed (make venv does).
        env["PYTHONPATH"] += os.pathsep + str(ROOT / "python_worker")
        env["VIRTUAL_ENV"] = str(VENV_PY.parent.parent)
        argv = [str(GATEWAY), "run", app, "--app-dir", str(BENCH), "--host", HOST, "--port", str(port),
                "--workers", "1", "--python", py, "--no-access-log", "--log-level", "warning"]
    elif server == "uvicorn":
        argv = [py, "-m", "uvicorn", app, "--app-dir", str(BENCH), "--host", HOST, "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    elif server == "granian":
        argv = [py, "-m", "granian", "--interface", "asgi", "--host", HOST, "--port", str(port),
                "--workers", "1", "--runtime-threads", "1", "--http", "1", "--loop", "uvloop",
                "--no-access-log", "--log-level", "warning", "--working-dir", str(BENCH), app]
    elif server == "hypercorn":
        # -w 0: serve in the one process (no supervisor process), like uvicorn.
        argv = [py, "-m", "hypercorn", "--bind", f"{HOST}:{port}", "--workers", "0", "--worker-class", "uvloop",
                "--log-level", "warning", app]
    elif server == "floor":
        argv = [str(FLOOR), "-addr", f"{HOST}:{port}"]
    else:
        raise ValueError(server)
    return argv, env


def not_applicable(server: str, wl: Workload) -> str | None:
    if server == "floor" and wl.kind != "http":
        return "the floor speaks HTTP only"
    if server in GATEWAYS and not GATEWAY.exists():
        return f"{GATEWAY.relative_to(ROOT)} missing (go build -o bin/asgi-gateway ./cmd/asgi-gateway failed?)"
    if server in GATEWAYS and os.environ.get("BENCH_GATEWAY_BUILD") == "failed":
        return "go build ./cmd/asgi-gateway failed"
    return None


def http_request(port: int, wl: Workload, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        body = b"x" * wl.body_size if wl.method == "POST" else None
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        conn.request(wl.method, wl.path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check_response(wl: Workload, status: int, body: bytes) -> str | None:
    """None when the response is what the workload's app sends, else what is wrong."""
    if status != 200:
        return f"status {status}"
    if wl.kind != "http":
        return None
    expected = {
        "plaintext": HELLO,
        "longpoll": HELLO,
        "get-10k": b"x" * 10240,
        "post-10k": b"x" * 10240,
        "post-64k": b"x" * 65536,
        "stream-1m": b"x" * MIB,
    }.get(wl.name)
    if wl.name == "json":
        try:
            ok = json.loads(body) == {"message": "Hello, World!"}
        except ValueError:
            ok = False
        return None if ok else f"body {body[:60]!r}"
    if expected is not None and body != expected:
        return f"body of {len(body)} bytes {body[:30]!r}..., expected {len(expected)} bytes"
    return None


class Server:
    def __init__(self, name: str, wl: Workload, cpu: int | None, log_path: Path):
        self.name, self.wl, self.cpu, self.log_path = name, wl, cpu, log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self):
        argv, extra_env = server_command(self.name, self.wl, self.port)
        env = dict(os.environ)
        for key, value in extra_env.items():
            env[key] = value + (os.pathsep + env[key] if key == "PYTHONPATH" and env.get(key) else "")
        env.update(MALLOC_ENV)
        if self.cpu is not None:
            argv = ["taskset", "-c", str(self.cpu)] + argv
        self.command = argv
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=BENCH, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, n: int = 6) -> str:
        """The end of the server's log, or from its first Go panic or fatal error on."""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        for i, line in enumerate(lines):
            if line.startswith(("panic:", "fatal error:")):
                # The message and the top frame: "panic: ...", goroutine, function, file:line.
                return " | ".join(x.strip() for x in lines[i : i + 6] if x.strip())
        return " | ".join(lines[-n:])

    def wait_ready(self, timeout: float = 30.0):
        """Until the server answers the workload's request correctly (raises RunError)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RunError(f"exited with status {self.proc.returncode}: {self.log_tail()}")
            try:
                status, body = http_request(self.port, self.wl)
            except (OSError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {e}"
                time.sleep(0.1)
                continue
            if status in (502, 503, 504):  # a front end up before its worker
                last = f"status {status}"
                time.sleep(0.1)
                continue
            problem = check_response(self.wl, status, body)
            if problem:
                raise RunError(f"wrong response to {self.wl.method} {self.wl.path}: {problem}")
            return
        raise RunError(f"not ready after {timeout:.0f} s ({last}): {self.log_tail()}")

    def stop(self):
        if self.proc is None:
            return
        # Worker processes might live in a session of their own: remember them all, by id,
        # to end any that outlive the server's group.
        tree = [(pid, start_time(pid)) for pid in process_tree(self.proc.pid)] if self.proc.poll() is None else []
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        else:
            # The leader exited; reap whatever of its group is left.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid, started in tree[1:]:
            if started is not None and start_time(pid) == started:  # the same process, not a reused id
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self.log.close()


# --------------------------------------------------------------------------------------
# Load generators

WRK_LUA = """-- generated by bench/run.py
{request}
done = function(summary, latency, requests)
  io.write(string.format(
    "BENCHJSON {{\\"requests\\":%.0f,\\"duration_us\\":%.0f,\\"bytes\\":%.0f," ..
    "\\"err_connect\\":%.0f,\\"err_read\\":%.0f,\\"err_write\\":%.0f,\\"err_status\\":%.0f,\\"err_timeout\\":%.0f," ..
    "\\"p50_us\\":%.1f,\\"p99_us\\":%.1f,\\"mean_us\\":%.1f,\\"max_us\\":%.1f}}\\n",
    summary.requests, summary.duration, summary.bytes,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


def wrk_script(wl: Workload, directory: Path) -> Path:
    if wl.method == "POST":
        request = (f'wrk.method = "POST"\nwrk.body = string.rep("x", {wl.body_size})\n'
                   'wrk.headers["Content-Type"] = "application/octet-stream"')
    else:
        request = f'wrk.method = "{wl.method}"'
    path = directory / f"wrk-{wl.name}.lua"
    path.write_text(WRK_LUA.format(request=request))
    return path


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", str(cpu)] + argv


def run_wrk(port: int, wl: Workload, seconds: int, script: Path, cpu: int | None) -> dict:
    argv = pinned(["wrk", "-t1", f"-c{wl.conns}", f"-d{seconds}s", "--latency", "--timeout", "10s",
                   "-s", str(script), f"http://{HOST}:{port}{wl.path}"], cpu)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        raise RunError("wrk did not finish")
    for line in p.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            res = json.loads(line[len("BENCHJSON "):])
            res["stdout"] = p.stdout
            return res
    raise RunError(f"wrk failed (status {p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}")


class LoadgenProcess:
    """bench-loadgen with line-by-line stdout; killed if it outlives its time budget."""

    def __init__(self, argv: list[str], budget: float):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.timer = threading.Timer(budget, self.proc.kill)
        self.timer.start()

    def lines(self):
        for line in self.proc.stdout:
            yield line.rstrip("\n")

    def send(self, line: str):
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass

    def finish(self) -> str:
        self.timer.cancel()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()
        return self.proc.stderr.read()


# --------------------------------------------------------------------------------------
# One run: one server, one workload, one round


def measure(server: Server, wl: Workload, args) -> dict:
    root = server.proc.pid
    sampler = RssSampler(root)
    sampler.start()
    try:
        if wl.kind == "http":
            out = measure_http(server, wl, args)
        elif wl.kind == "ws-echo":
            out = measure_ws_echo(server, wl, args)
        else:
            out = measure_ws_idle(server, wl, args)
        if server.proc.poll() is not None:
            raise RunError(f"server exited during the run: {server.log_tail()}")
        if out.get("foreign_cpu_share", 0) > 0.10:
            note = f"core {args.server_cpu} was {out['foreign_cpu_share']:.0%} busy with other processes"
            out["warning"] = f"{out['warning']}; {note}" if out.get("warning") else note
        out["rss_hwm_mib"] = tree_kib(root, "VmHWM") / 1024
        out["processes"] = {str(pid): process_kind(pid) for pid in process_tree(root)}
    finally:
        sampler.stop()
    out["rss_sampled_peak_mib"] = sampler.peak_kib / 1024
    out["rss_mib"] = out["rss_hwm_mib"]
    return out


def per_unit(cpu: dict, units: float) -> dict:
    if units <= 0:
        return {}
    return {f"cpu_{k}": v * 1e6 / units for k, v in cpu.items()}


def measure_http(server: Server, wl: Workload, args) -> dict:
    script = wrk_script(wl, args.workdir)
    run_wrk(server.port, wl, args.warmup, script, args.load_cpu)
    window = Window(server.proc.pid, args.server_cpu)
    res = run_wrk(server.port, wl, args.duration, script, args.load_cpu)
    win = window.close()
    cpu = win["cpu_seconds"]
    requests = res["requests"]
    if requests < 2 * wl.conns:
        raise RunError(f"stalled: {requests:.0f} requests completed over {wl.conns} connections in "
                       f"{args.duration} s (wrk errors: {wrk_errors(res) or 'none'})")
    bad = res["err_status"] + res["err_timeout"]
    if bad > 0.01 * requests:
        raise RunError(f"{res['err_status']} non-2xx/3xx and {res['err_timeout']} timed-out of {requests} requests")
    out = {
        "rate": requests / (res["duration_us"] / 1e6),
        "p50_ms": res["p50_us"] / 1000,
        "p99_ms": res["p99_us"] / 1000,
        "units": requests,
        **win,
        **per_unit(cpu, requests),
        "wrk": res,
    }
    warnings = []
    errors = wrk_errors(res)
    if errors:
        warnings.append(f"wrk errors: {errors}")
    stretched = res["duration_us"] / 1e6 / args.duration
    if stretched > 1.2:
        warnings.append(f"wrk ran {stretched:.1f}x its {args.duration} s (stalls)")
    if warnings:
        out["warning"] = "; ".join(warnings)
    return out


def wrk_errors(res: dict) -> str:
    parts = [f"{k[4:]} {res[k]:.0f}" for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout") if res.get(k)]
    return ", ".join(parts)


def measure_ws_echo(server: Server, wl: Workload, args) -> dict:
    argv = pinned([str(LOADGEN), "ws-echo", "-url", f"ws://{HOST}:{server.port}{wl.path}", "-c", str(wl.conns),
                   "-size", "1024", "-warmup", f"{args.warmup}s", "-d", f"{args.duration}s"], args.load_cpu)
    lg = LoadgenProcess(argv, args.warmup + args.duration + 60)
    window = win = result = None
    try:
        for line in lg.lines():
            if line == "MEASURE_START":
                window = Window(server.proc.pid, args.server_cpu)
            elif line == "MEASURE_END" and window is not None:
                win = window.close()
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
    finally:
        stderr = lg.finish()
    if result is None:
        raise RunError(f"loadgen failed: {stderr.strip()[-300:]}")
    if result.get("error"):
        raise RunError(result["error"])
    if win is None:
        raise RunError("loadgen did not report its measured window")
    out = {
        "rate": result["rate"],
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "units": result["messages"],
        **win,
        **per_unit(win["cpu_seconds"], result["messages"]),
        "loadgen": result,
    }
    if result.get("errors"):
        out["warning"] = f"{result['errors']} connection(s) failed: {result.get('first_error')}"
    return out


def measure_ws_idle(server: Server, wl: Workload, args) -> dict:
    root = server.proc.pid
    time.sleep(0.5)
    base_kib = tree_kib(root, "VmRSS")
    argv = pinned([str(LOADGEN), "ws-idle", "-url", f"ws://{HOST}:{server.port}{wl.path}",
                   "-n", str(args.idle_conns)], args.load_cpu)
    window = Window(root, args.server_cpu)
    lg = LoadgenProcess(argv, 180)
    opened = result = win = None
    held_kib = 0
    try:
        for line in lg.lines():
            if line.startswith("OPENED "):
                opened = json.loads(line[len("OPENED "):])
                time.sleep(1.0)  # let the server settle
                for _ in range(5):
                    held_kib = max(held_kib, tree_kib(root, "VmRSS"))
                    time.sleep(0.2)
                win = window.close()
                lg.send("check")
            elif line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
    finally:
        stderr = lg.finish()
    if result is None:
        raise RunError(f"loadgen failed: {stderr.strip()[-300:]}")
    if result.get("error"):
        raise RunError(result["error"])
    if opened is None or win is None:
        raise RunError("loadgen did not report the opened connections")
    n_open = opened["opened"]
    out = {
        "opened": n_open,
        "alive": result.get("alive", 0),
        "rate": opened["open_rate"],
        "p50_ms": opened["p50_us"] / 1000,
        "p99_ms": opened["p99_us"] / 1000,
        "units": n_open,
        "rss_base_mib": base_kib / 1024,
        "rss_held_mib": held_kib / 1024,
        "rss_per_conn_kib": (held_kib - base_kib) / n_open,
        **win,
        **per_unit(win["cpu_seconds"], n_open),
        "loadgen": result,
    }
    problems = []
    if n_open < args.idle_conns:
        problems.append(f"{args.idle_conns - n_open} of {args.idle_conns} failed to open ({opened.get('first_error')})")
    if out["alive"] < n_open:
        problems.append(f"{n_open - out['alive']} of {n_open} no longer echoed ({result.get('check_error')})")
    if n_open < 0.99 * args.idle_conns or out["alive"] < 0.99 * n_open:
        raise RunError("; ".join(problems))
    if problems:
        out["warning"] = "; ".join(problems)
    return out


def cores_busy(cpus: list[int], seconds: float = 0.5) -> float:
    """The busiest of these cores' busy share over the next `seconds`."""
    before = [core_ticks(c) for c in cpus]
    time.sleep(seconds)
    shares = []
    for c, (b0, t0) in zip(cpus, before):
        b1, t1 = core_ticks(c)
        shares.append((b1 - b0) / (t1 - t0) if t1 > t0 else 0.0)
    return max(shares, default=0.0)


def wait_quiet(args) -> dict:
    """Waits (at most --quiet-wait s) until both pinned cores are mostly idle: the machine is shared."""
    cpus = [c for c in (args.server_cpu, args.load_cpu) if c is not None]
    if not cpus or args.quiet_wait <= 0:
        return {}
    t0 = time.monotonic()
    while True:
        busy = cores_busy(cpus)
        waited = time.monotonic() - t0
        if busy < 0.15 or waited >= args.quiet_wait:
            return {"quiet_wait_seconds": round(waited, 1), "busy_before": round(busy, 3)}


def run_one(server_name: str, wl: Workload, rnd: int, args) -> dict:
    record = {"server": server_name, "workload": wl.name, "round": rnd}
    reason = not_applicable(server_name, wl)
    if reason:
        record.update(ok=False, skipped=True, error=reason, inapplicable=server_name == "floor")
        return record
    record.update(wait_quiet(args))
    log_path = args.workdir / f"{wl.name}-{server_name}-r{rnd}.log"
    server = Server(server_name, wl, args.server_cpu, log_path)
    t0 = time.monotonic()
    try:
        server.start()
        record["command"] = server.command
        server.wait_ready()
        record["startup_seconds"] = time.monotonic() - t0
        record.update(measure(server, wl, args))
        record["ok"] = True
    except RunError as e:
        error = str(e)
        if server.proc is not None and server.proc.poll() is not None and "exited" not in error:
            error += f" (the server had exited with status {server.proc.returncode}: {server.log_tail()})"
        record.update(ok=False, error=error)
    except Exception as e:  # a harness bug must not take the whole benchmark down
        record.update(ok=False, error=f"harness error: {type(e).__name__}: {e}")
    finally:
        try:
            server.stop()
        except Exception as e:
            record.setdefault("warning", f"stopping: {e}")
    if record["ok"]:
        log_path.unlink(missing_ok=True)
    else:
        record["log"] = str(log_path)
    return record


# --------------------------------------------------------------------------------------
# Tables

COLUMNS = {
    "http": [("req/s", "rate"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("CPU µs/req", "cpu_total"),
             ("gateway µs/req", "cpu_front"), ("Python µs/req", "cpu_python"), ("peak RSS MiB", "rss_mib")],
    "ws-echo": [("msg/s", "rate"), ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"), ("CPU µs/msg", "cpu_total"),
                ("gateway µs/msg", "cpu_front"), ("Python µs/msg", "cpu_python"), ("peak RSS MiB", "rss_mib")],
    "ws-idle": [("open", "opened"), ("RSS KiB/conn", "rss_per_conn_kib"), ("RSS held MiB", "rss_held_mib"),
                ("opened/s", "rate"), ("handshake p50 ms", "p50_ms"), ("p99 ms", "p99_ms"),
                ("CPU µs/conn", "cpu_total"), ("gateway µs/conn", "cpu_front"), ("Python µs/conn", "cpu_python"),
                ("peak RSS MiB", "rss_mib")],
}


def fmt(v: float, key: str) -> str:
    if key in ("rate", "opened"):
        return f"{v:,.0f}"
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def summarize(runs: list[dict], workloads: list[Workload], servers: list[str]) -> dict:
    summary = {}
    for wl in workloads:
        per_server = {}
        for s in servers:
            mine = [r for r in runs if r["workload"] == wl.name and r["server"] == s]
            ok = [r for r in mine if r.get("ok")]
            entry = {"runs": len(mine), "ok": len(ok)}
            if ok:
                keys = {k for r in ok for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                keys -= {"round"}
                entry["median"] = {k: statistics.median(r[k] for r in ok if k in r) for k in sorted(keys)}
            failed = [r for r in mine if not r.get("ok")]
            if failed:
                entry["error"] = failed[0]["error"]
                entry["skipped"] = bool(failed[0].get("skipped"))
                entry["inapplicable"] = bool(failed[0].get("inapplicable"))
            warnings = [f"round {r['round'] + 1}: {r['warning']}" for r in ok if r.get("warning")]
            if warnings:
                entry["warnings"] = warnings
            per_server[s] = entry
        summary[wl.name] = per_server
    return summary


def table(wl: Workload, per_server: dict, servers: list[str], rounds: int) -> str:
    cols = COLUMNS[wl.kind]
    base = per_server.get(BASELINE, {}).get("median")
    lines = [f"### {wl.name}: {wl.title}", "",
             "| server | " + " | ".join(c[0] for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    notes = []
    for s in servers:
        entry = per_server[s]
        med = entry.get("median")
        if not med and entry.get("inapplicable"):
            continue  # the floor has no WebSocket: no row
        if not med:
            lines.append(f"| {s} | " + " | ".join("n/a" for _ in cols) + " |")
            notes.append(f"{s}: n/a: {entry.get('error', 'no run')}")
            continue
        cells = []
        for _, key in cols:
            v = med.get(key)
            if v is None:
                cells.append("n/a")
                continue
            # No process of that kind (uvicorn has no gateway, the floor no Python): a dash.
            cell = "–" if key in ("cpu_front", "cpu_python") and v == 0 else fmt(v, key)
            if base and s != BASELINE and base.get(key) and key != "opened" and v:
                cell += f" ({v / base[key]:.2f}×)"
            cells.append(cell)
        label = s if entry["ok"] == rounds else f"{s} ({entry['ok']}/{rounds} runs)"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if entry["ok"] < entry["runs"]:
            notes.append(f"{s}: {entry['runs'] - entry['ok']} run(s) failed: {entry.get('error')}")
        for w in entry.get("warnings", []):
            notes.append(f"{s}: {w}")
    out = "\n".join(lines)
    if notes:
        out += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return out + "\n"


# --------------------------------------------------------------------------------------


def tool_versions() -> dict:
    versions = {"python": platform.python_version()}
    try:
        from importlib import metadata
        for name in ("uvicorn", "granian", "hypercorn", "httptools", "uvloop", "starlette", "websockets"):
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
    except ImportError:
        pass

    def out(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=ROOT)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return None

    versions["wrk"] = out(["wrk", "-v"])
    versions["go"] = out(["go", "version"])
    versions["git"] = out(["git", "rev-parse", "--short", "HEAD"])
    return versions


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="workloads: " + ", ".join(w.name for w in WORKLOADS)
                                + "\nservers: " + ", ".join(SERVERS) + " (and, only when named: "
                                + ", ".join(OPTIONAL_SERVERS) + ")")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 round, 3 s runs, 1 s warm-up, the quick subset of workloads, 2,000 idle WebSockets")
    p.add_argument("--rounds", type=int, help="rounds, each running every server once per workload (default 3)")
    p.add_argument("--duration", type=int, help="measured seconds per run (default 10)")
    p.add_argument("--warmup", type=int, help="warm-up seconds per run, not measured (default 2)")
    p.add_argument("--workloads", "-w", help="comma-separated workload names (default: all, or the quick subset)")
    p.add_argument("--servers", "-s", help="comma-separated server names (default: all)")
    p.add_argument("--idle-conns", type=int, help="connections of the ws-idle workload (default 10000)")
    p.add_argument("--server-cpu", type=int, help="core the servers are pinned to (default: the second allowed core)")
    p.add_argument("--load-cpu", type=int, help="core the load generators are pinned to (default: the first)")
    p.add_argument("--no-pin", action="store_true", help="do not pin anything (not comparable with pinned runs)")
    p.add_argument("--quiet-wait", type=float,
                   help="before each run, wait up to this many seconds for both pinned cores to be <15%% busy "
                        "(default 10, quick 3; 0: do not wait)")
    p.add_argument("--output", help="where to write the JSON (default bench/results/<time>.json)")
    p.add_argument("--list", action="store_true", help="list workloads and servers, then exit")
    args = p.parse_args(argv)

    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.warmup = max(args.warmup, 1)  # wrk's minimum
    args.idle_conns = args.idle_conns or (2000 if args.quick else 10000)
    if args.quiet_wait is None:
        args.quiet_wait = 3.0 if args.quick else 10.0
    if args.workloads:
        names = [n.strip() for n in args.workloads.split(",") if n.strip()]
        unknown = [n for n in names if n not in WORKLOADS_BY_NAME]
        if unknown:
            p.error(f"unknown workload(s): {', '.join(unknown)}")
        args.workload_list = [WORKLOADS_BY_NAME[n] for n in names]
    else:
        args.workload_list = [w for w in WORKLOADS if w.quick or not args.quick]
    if args.servers:
        names = [n.strip() for n in args.servers.split(",") if n.strip()]
        unknown = [n for n in names if n not in SERVERS + OPTIONAL_SERVERS]
        if unknown:
            p.error(f"unknown server(s): {', '.join(unknown)}")
        args.server_list = [s for s in SERVERS + OPTIONAL_SERVERS if s in names]
    else:
        args.server_list = list(SERVERS)

    cpus = sorted(os.sched_getaffinity(0))
    if args.no_pin or len(cpus) < 2 or not shutil.which("taskset"):
        if not args.no_pin:
            print("warning: fewer than 2 cores allowed, or no taskset: not pinning", file=sys.stderr)
        args.server_cpu = args.load_cpu = None
    else:
        args.load_cpu = cpus[0] if args.load_cpu is None else args.load_cpu
        args.server_cpu = cpus[1] if args.server_cpu is None else args.server_cpu
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:10} {'quick ' if w.quick else '      '}{w.title}")
        print("servers:", ", ".join(SERVERS), "(only when named:", ", ".join(OPTIONAL_SERVERS) + ")")
        return 0

    missing = [str(p) for p in (FLOOR, LOADGEN, VENV_PY) if not p.exists()]
    if missing:
        print(f"missing: {', '.join(missing)} (run bench/run.sh, which builds and installs them)", file=sys.stderr)
        return 2
    try:
        subprocess.run(["wrk", "-v"], capture_output=True)
    except OSError:
        print("wrk not found (run bench/run.sh, which installs it)", file=sys.stderr)
        return 2

    # 10,000 WebSockets need as many descriptors in the server and the load generator.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.idle_conns + 1024
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            print(f"warning: open-file limit {new}: ws-idle may fail to open {args.idle_conns} connections",
                  file=sys.stderr)
    if args.load_cpu is not None:
        os.sched_setaffinity(0, {args.load_cpu})  # the harness's own sampling stays off the server's core

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.workdir = RESULTS / f"work-{stamp}"
    args.workdir.mkdir(parents=True, exist_ok=True)
    output = Path(args.output) if args.output else RESULTS / f"bench-{stamp}.json"

    servers, workloads = args.server_list, args.workload_list
    meta = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "versions": tool_versions(),
        "gateway_binary_mtime": (datetime.datetime.fromtimestamp(GATEWAY.stat().st_mtime).isoformat(timespec="seconds")
                                 if GATEWAY.exists() else None),
    }
    config = {k: getattr(args, k) for k in ("quick", "rounds", "duration", "warmup", "idle_conns", "server_cpu",
                                           "load_cpu", "quiet_wait")}
    config.update(workloads=[w.name for w in workloads], servers=servers, malloc_env=MALLOC_ENV)

    total = len(workloads) * len(servers) * args.rounds
    print(f"# asgi-gateway benchmark ({stamp})\n")
    print(f"{len(workloads)} workload(s) x {len(servers)} server(s) x {args.rounds} round(s), "
          f"{args.duration} s measured after {args.warmup} s warm-up; server on core {args.server_cpu}, "
          f"load on core {args.load_cpu}; load average at start {meta['loadavg_start'][0]:.2f}\n", flush=True)
    if meta["loadavg_start"][0] > 0.5:
        print(f"warning: load average {meta['loadavg_start'][0]:.2f}: the machine is busy, numbers will be noisy\n",
              file=sys.stderr)

    runs: list[dict] = []
    started = time.monotonic()
    done = 0
    interrupted = False
    try:
        for wl in workloads:
            for rnd in range(args.rounds):
                k = rnd % len(servers)
                for s in servers[k:] + servers[:k]:
                    done += 1
                    rec = run_one(s, wl, rnd, args)
                    runs.append(rec)
                    if rec.get("ok"):
                        status = f"{fmt(rec['rate'], 'rate')}/s p99 {rec['p99_ms']:.2f} ms"
                        if "foreign_cpu_share" in rec:
                            status += f" (server core {rec['foreign_cpu_share']:.0%} busy with others)"
                    else:
                        status = "n/a: " + rec["error"]
                    print(f"  [{done}/{total}] {wl.name} round {rnd + 1} {s}: {status}", file=sys.stderr, flush=True)
            summary = summarize(runs, [wl], servers)
            print(table(wl, summary[wl.name], servers, args.rounds), flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: saving what ran", file=sys.stderr)

    meta["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    meta["elapsed_seconds"] = time.monotonic() - started
    meta["loadavg_end"] = os.getloadavg()
    ran = [w for w in workloads if any(r["workload"] == w.name for r in runs)]
    doc = {"meta": meta, "config": config, "summary": summarize(runs, ran, servers), "runs": runs}
    output.write_text(json.dumps(doc, indent=1, default=str))
    try:
        for p in args.workdir.glob("*.lua"):
            p.unlink()
        if not any(args.workdir.iterdir()):
            args.workdir.rmdir()
    except OSError:
        pass
    print(f"Ratios in parentheses are to {BASELINE} in the same run (throughput: higher is better; "
          "latency, CPU and memory: lower is better). Medians over rounds.")
    print(f"Raw results: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} "
          f"({meta['elapsed_seconds'] / 60:.1f} min)")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
