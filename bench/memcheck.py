"""Memory check: 1 GiB upload to a slow app and 1 GiB download through a slow client.

Both the gateway and the worker must hold bounded memory (flow-control windows, and the body ring's
shared pages), not the body. Prints the peak RSS (VmHWM) of the gateway and of the worker after each
transfer, how much of their RSS is then the shared body ring (RssShmem: counted in both), and their
RSS once idle again (the ring's pages given back). Run: `make memcheck`
(or .venv/bin/python bench/memcheck.py [--size-mib N]).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def vm(pid: int, key: str) -> int:
    """A /proc/<pid>/status size field, in KiB."""
    text = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1))


def shared(gw: int, worker: int) -> None:
    print(f"  of which shared (body ring) right after: gateway {vm(gw, 'RssShmem') / 1024:.1f} MiB, "
          f"worker {vm(worker, 'RssShmem') / 1024:.1f} MiB")


def start() -> tuple[subprocess.Popen, int, int]:
    proc = subprocess.Popen(
        [str(ROOT / "bin/asgi-gateway"), "run", "memcheck_app:app", "--app-dir", str(ROOT / "bench"),
         "--python", sys.executable, "--port", "0", "--no-access-log", "--log-level", "info"],
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    for line in proc.stderr:
        m = re.search(r"listening on http://[\d.]+:(\d+)", line)
        if m:
            break
        if time.time() > deadline:
            raise SystemExit("gateway did not start")
    port = int(m.group(1))
    worker = int(re.search(r"pids=\[(\d+)", line).group(1))
    return proc, port, worker


def upload(port: int, size: int) -> float:
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    block = b"u" * (1 << 20)
    left = size
    while left:
        n = min(left, len(block))
        s.sendall(block[:n])
        left -= n
    resp = b""
    while b"\r\n\r\n" not in resp or not resp.endswith(str(size).encode()):
        data = s.recv(65536)
        if not data:
            break
        resp += data
    s.close()
    assert resp.endswith(str(size).encode()), resp[-200:]
    return time.time() - t0


def download(port: int, size: int) -> float:
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /download?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
    got = 0
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(65536)
    got = len(head.split(b"\r\n\r\n", 1)[1])
    while got < size:
        data = s.recv(65536)
        if not data:
            break
        got += len(data)
        time.sleep(0.0002)  # a slow client
    s.close()
    assert got == size, (got, size)
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    size = ap.parse_args().size_mib << 20
    proc, port, worker = start()
    try:
        gw = proc.pid
        base = (vm(gw, "VmRSS"), vm(worker, "VmRSS"))
        print(f"idle RSS: gateway {base[0] / 1024:.1f} MiB, worker {base[1] / 1024:.1f} MiB")
        took = upload(port, size)
        print(f"upload {size >> 20} MiB to a slow app in {took:.1f}s: peak RSS gateway {vm(gw, 'VmHWM') / 1024:.1f} MiB, "
              f"worker {vm(worker, 'VmHWM') / 1024:.1f} MiB")
        shared(gw, worker)
        took = download(port, size)
        print(f"download {size >> 20} MiB by a slow client in {took:.1f}s: peak RSS gateway {vm(gw, 'VmHWM') / 1024:.1f} MiB, "
              f"worker {vm(worker, 'VmHWM') / 1024:.1f} MiB")
        shared(gw, worker)
        time.sleep(3)  # the ring is trimmed after about a second of idleness
        print(f"idle again after 3 s: RSS gateway {vm(gw, 'VmRSS') / 1024:.1f} MiB, worker {vm(worker, 'VmRSS') / 1024:.1f} MiB")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
