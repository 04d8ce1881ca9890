"""Helpers of the integration tests: run the real `bin/asgi-gateway`, and talk raw HTTP/1.1.

Imported by the test modules (and by conftest.py for the fixtures).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
APPS_DIR = REPO_ROOT / "integration_tests" / "apps"
EXAMPLES_DIR = REPO_ROOT / "examples"
BINARY = Path(os.environ.get("ASGI_GATEWAY_BIN", REPO_ROOT / "bin" / "asgi-gateway"))
START_TIMEOUT = 20.0

#: testapp's /_/headers response fields, in its order: names out of order, set-cookie and x-dup
#: twice and apart, its own content-length.
TESTAPP_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-first", b"1"),
    (b"set-cookie", b"a=1; Path=/"),
    (b"content-type", b"text/plain"),
    (b"x-dup", b"one"),
    (b"set-cookie", b"b=2; Path=/; HttpOnly"),
    (b"x-dup", b"two"),
    (b"content-length", b"7"),
    (b"x-last", b"z"),
]

_LISTENING = re.compile(r"listening on (http://\S+|unix:\S+)")


def venv_python() -> str:
    """The interpreter the workers run: the repository's .venv, else the one running pytest."""
    candidate = REPO_ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def build_binary() -> None:
    """Builds bin/asgi-gateway if it is missing (`make build` keeps it fresh otherwise)."""
    if BINARY.exists():
        return
    result = subprocess.run(
        ["go", "build", "-o", str(BINARY), "./cmd/asgi-gateway"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"go build failed:\n{result.stdout}\n{result.stderr}")


class ServerStartError(Exception):
    pass


@dataclass
class GatewayServer:
    """One running `asgi-gateway run ...` process."""

    process: subprocess.Popen[bytes]
    stderr_path: Path
    url: str  # http://127.0.0.1:PORT, or unix:PATH
    args: list[str]
    _stderr_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def uds(self) -> str:
        assert self.url.startswith("unix:")
        return self.url[len("unix:") :]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def raw(self, timeout: float = 10.0) -> "RawConnection":
        if self.url.startswith("unix:"):
            return RawConnection.unix(self.uds, timeout)
        return RawConnection.tcp(self.host, self.port, timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None
        return self.process.returncode


def gateway_command(app: str, *args: str, python: str | None = None, python_flag: bool = True) -> list[str]:
    """`asgi-gateway run APP --python PY ARGS...` (without --python when python_flag is False)."""
    command = [str(BINARY), "run", app]
    if python_flag:
        command += ["--python", python or venv_python()]
    return command + list(args)


def start_server(
    app: str,
    stderr_path: Path,
    *,
    app_dir: Path | str | None = APPS_DIR,
    workers: int = 1,
    extra_args: Sequence[str] = (),
    uds: str | None = None,
    env: dict[str, str] | None = None,
    python: str | None = None,
    python_flag: bool = True,
    timeout: float = START_TIMEOUT,
) -> GatewayServer:
    """Starts the binary and waits for its "listening on" line; raises ServerStartError with stderr."""
    args: list[str] = []
    if app_dir is not None:
        args += ["--app-dir", str(app_dir)]
    if uds is not None:
        args += ["--uds", uds]
    else:
        args += ["--host", "127.0.0.1", "--port", "0"]
    args += ["--workers", str(workers), *extra_args]
    command = gateway_command(app, *args, python=python, python_flag=python_flag)
    stderr_file = open(stderr_path, "wb")
    process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=stderr_file,  # stdout too, so that nothing is lost
        stderr=stderr_file,
        env=env if env is not None else dict(os.environ),
    )
    server = GatewayServer(process, stderr_path, "", command, stderr_file)
    deadline = time.monotonic() + timeout
    while True:
        text = stderr_path.read_text(errors="replace")
        match = _LISTENING.search(text)
        if match:
            server.url = match.group(1).rstrip(".,;")
            return server
        if process.poll() is not None:
            server.stop()
            raise ServerStartError(
                f"asgi-gateway exited with {process.returncode} before listening.\n"
                f"command: {command}\nstderr:\n{text}"
            )
        if time.monotonic() > deadline:
            server.stop()
            raise ServerStartError(
                f"asgi-gateway did not log 'listening on' within {timeout} s.\n"
                f"command: {command}\nstderr:\n{stderr_path.read_text(errors='replace')}"
            )
        time.sleep(0.05)


# --- raw HTTP/1.1 over a socket ---------------------------------------------------------------


@dataclass
class RawResponse:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]  # as received: original case, latin-1
    body: bytes = b""
    framing: str = "none"  # "none", "length", "chunked", "close"
    chunk_sizes: list[int] = field(default_factory=list)  # chunked: each size, the 0 last
    trailers: list[tuple[str, str]] = field(default_factory=list)
    head_bytes: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.header_list(name)
        return values[0] if values else None

    def header_list(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def connection_tokens(self) -> set[str]:
        return {
            token.strip().lower()
            for value in self.header_list("connection")
            for token in value.split(",")
            if token.strip()
        }


class IncompleteResponse(Exception):
    """The connection closed before the response was complete."""

    def __init__(self, message: str, partial: bytes) -> None:
        super().__init__(message)
        self.partial = partial


class RawConnection:
    """A client socket with a read buffer and a small HTTP/1.1 response parser."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.eof = False

    @classmethod
    def tcp(cls, host: str, port: int, timeout: float = 10.0) -> "RawConnection":
        return cls(socket.create_connection((host, port), timeout=timeout))

    @classmethod
    def unix(cls, path: str, timeout: float = 10.0) -> "RawConnection":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(path)
        return cls(sock)

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def read_until(self, delimiter: bytes) -> bytes:
        while delimiter not in self.buffer:
            if not self._fill():
                raise IncompleteResponse(f"connection closed before {delimiter!r}", self.buffer)
        data, _, self.buffer = self.buffer.partition(delimiter)
        return data + delimiter

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise IncompleteResponse(f"connection closed with {len(self.buffer)}/{size} bytes", self.buffer)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_to_close(self) -> bytes:
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data

    def peer_closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection (EOF) within timeout with nothing more sent."""
        if self.buffer:
            return False
        previous = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            return not self._fill()
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(previous)

    def read_head(self) -> RawResponse:
        head = self.read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        match = re.fullmatch(rb"HTTP/(\d\.\d) (\d{3})(?: (.*))?", lines[0])
        if match is None:
            raise AssertionError(f"not an HTTP/1.x status line: {lines[0]!r} (head {head!r})")
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or name != name.strip() or not name:
                raise AssertionError(f"malformed response header line {line!r}")
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        return RawResponse(
            version=match.group(1).decode(),
            status=int(match.group(2)),
            reason=(match.group(3) or b"").decode("latin-1"),
            headers=headers,
            head_bytes=head,
        )

    def read_response(self, method: str = "GET", allow_informational: bool = False) -> RawResponse:
        """Reads one response, framed as RFC 9112 section 6.3 says."""
        response = self.read_head()
        while 100 <= response.status < 200 and not allow_informational:
            response = self.read_head()
        if (
            method == "HEAD"
            or 100 <= response.status < 200
            or response.status in (204, 304)
        ):
            response.framing = "none"
            return response
        encodings = [
            token.strip().lower()
            for value in response.header_list("transfer-encoding")
            for token in value.split(",")
        ]
        lengths = response.header_list("content-length")
        if encodings:
            assert encodings[-1] == "chunked", f"response transfer-encoding {encodings} is not chunked last"
            assert not lengths, "response has both transfer-encoding and content-length"
            response.framing = "chunked"
            response.body = self.read_chunked(response)
        elif lengths:
            assert len(set(lengths)) == 1, f"conflicting content-length {lengths}"
            response.framing = "length"
            response.body = self.read_exact(int(lengths[0]))
        else:
            response.framing = "close"
            response.body = self.read_to_close()
        return response

    def read_chunked(self, response: RawResponse) -> bytes:
        """Reads a chunked body after ``response``'s head: its content (chunk sizes and trailer
        fields go into the response); a size line that is not one fails the test."""
        body = b""
        while True:
            try:
                line = self.read_until(b"\r\n")
            except IncompleteResponse as exc:
                raise IncompleteResponse(str(exc), body) from None
            size_text = line[:-2].split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]+", size_text):
                raise AssertionError(f"bad chunk size line {line!r}")
            size = int(size_text, 16)
            response.chunk_sizes.append(size)
            if size == 0:
                break
            try:
                body += self.read_exact(size)
                crlf = self.read_exact(2)
            except IncompleteResponse as exc:
                raise IncompleteResponse(str(exc), body + exc.partial) from None
            assert crlf == b"\r\n", f"chunk data not followed by CRLF: {crlf!r}"
        while True:
            line = self.read_until(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line[:-2].partition(b":")
            response.trailers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        return body

    def request(self, method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> RawResponse:
        """Sends a simple request (Host added if missing, content-length if body) and reads the answer."""
        lines = [f"{method} {target} HTTP/1.1"]
        names = {name.lower() for name, _ in headers}
        if "host" not in names:
            lines.append("Host: test.local")
        lines += [f"{name}: {value}" for name, value in headers]
        if body and "content-length" not in names and "transfer-encoding" not in names:
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return self.read_response(method)


def chunked(pieces: Sequence[bytes]) -> Iterator[bytes]:
    """Chunked transfer coding of pieces (each non-empty), then the last chunk."""
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


def app_count(server: GatewayServer) -> int:
    """How many requests faulty_app (apps/faulty_app.py, its /_/count route) has seen, this one not
    counted: a request the gateway refused never reached it."""
    with server.raw() as conn:
        response = conn.request("GET", "/_/count", headers=[("Connection", "close")])
    assert response.status == 200, response
    return json.loads(response.body)["count"]
