"""Deployment surface: what the gateway writes to stderr.

--log-level, --log-format json, --access-log / --no-access-log, --access-log-format, --use-colors /
--no-use-colors, and the app's own output (print and logging, at import and per request), which the
gateway forwards line by line with the worker id.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from typing import Any

import httpx
import pytest

from gateway_harness import APPS_DIR, RawConnection
from test_deploy_options import Launched, Launcher, free_port, launcher  # noqa: F401 (fixture)

APP = ("testapp:app", "--app-dir", str(APPS_DIR))
# A console line: "15:04:05 INF message key=value ..."
CONSOLE_LINE = re.compile(r"^\d\d:\d\d:\d\d (TRC|DBG|INF|WRN|ERR|FTL|PNC|\?\?\?) ")
LEVELS = ["trace", "debug", "info", "warning", "error", "critical"]
TAGS = {"trace": "TRC", "debug": "DBG", "info": "INF", "warning": "WRN", "error": "ERR", "critical": "FTL"}
TAG_ORDER = ["TRC", "DBG", "INF", "WRN", "ERR", "FTL", "PNC"]


def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


def wait_for(server: Launched, predicate: Any, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log()
        if predicate(log):
            return log
        time.sleep(0.05)
    return server.log()


def client() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=10)


def exercise(url: str, tag: str) -> None:
    """A normal request, an app exception (logged as an error with a traceback) and a 404-ish path."""
    with client() as c:
        assert c.get(f"{url}/ok-{tag}").status_code == 200
        assert c.get(f"{url}/_/error/before-start").status_code == 500


# --- --log-level ------------------------------------------------------------------------------


def run_at_level(launcher: Launcher, level: str, *extra: str) -> str:
    """The whole console log of: start at `level`, exercise, SIGTERM. (Waits on the port, not on the
    "listening on" line, which is an info line.)"""
    port = free_port()
    tag = uuid.uuid4().hex[:8]
    command = [*APP, "--port", str(port), "--log-level", level, "--no-use-colors", *extra]
    server = launcher.start_unwatched(*command)
    wait_listening(port)
    exercise(f"http://127.0.0.1:{port}", tag)
    time.sleep(0.2)
    assert server.stop() == 0, server.log()
    return server.log()


def level_tags(log: str) -> list[str]:
    """The level tag of each line; a line that does not start a console entry continues the one
    before it (the lines of a traceback, one log record), whose tag it takes."""
    tags: list[str] = []
    for line in log.splitlines():
        match = CONSOLE_LINE.match(line)
        assert match or tags, f"not a console log line: {line!r}"
        tags.append(match.group(1) if match else tags[-1])
    return tags


@pytest.mark.parametrize("level", LEVELS)
def test_log_level_hides_lower_levels(launcher: Launcher, level: str) -> None:
    log = run_at_level(launcher, level)
    lowest = TAG_ORDER.index(TAGS[level])
    below = [line for line, tag in zip(log.splitlines(), level_tags(log)) if TAG_ORDER.index(tag) < lowest]
    assert not below, f"lines below {level}:\n" + "\n".join(below)
    if level in ("trace", "debug", "info"):
        assert "listening on" in log
    if level in ("trace", "debug", "info", "warning", "error"):
        # The app's exception (a Python traceback forwarded from the worker) is an error, all of
        # it: its frames and the exception line, not only the record's first line.
        assert "failing before http.response.start, on purpose" in log, log
        lines, tags = log.splitlines(), level_tags(log)
        frames = [tag for line, tag in zip(lines, tags) if 'testapp.py", line' in line]
        raised = [tag for line, tag in zip(lines, tags) if line.startswith("RuntimeError: failing before")]
        assert frames and set(frames) == {"ERR"}, log
        assert raised and set(raised) == {"ERR"}, log


def test_debug_shows_more_than_info_more_than_warning(launcher: Launcher) -> None:
    counts = {level: len(run_at_level(launcher, level).splitlines()) for level in ("debug", "info", "warning")}
    assert counts["debug"] > counts["info"] > counts["warning"], counts


def test_log_level_bad_value(launcher: Launcher) -> None:
    result = launcher.run(*APP, "--port", "0", "--log-level", "loud")
    assert result.returncode == 2
    assert "loud" in result.stderr


# --- --log-format json ------------------------------------------------------------------------


def assert_all_json(log: str) -> list[dict[str, Any]]:
    records = []
    bad = []
    for line in log.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if not isinstance(record, dict):
            bad.append(line)
            continue
        records.append(record)
    assert not bad, "stderr lines that are not JSON objects:\n" + "\n".join(bad)
    return records


def test_log_format_json_every_line_is_a_json_object(launcher: Launcher) -> None:
    server = launcher.start(*APP, "--port", "0", "--log-format", "json", "--log-level", "debug", "--workers", "2")
    tag = uuid.uuid4().hex[:8]
    exercise(server.url, tag)
    wait_for(server, lambda log: f"ok-{tag}" in log)
    assert server.stop() == 0
    records = assert_all_json(server.log())
    assert all("level" in r and "message" in r for r in records), records
    assert any(r["message"].startswith("listening on http://127.0.0.1:") for r in records)
    access = [r for r in records if f"/ok-{tag}" in json.dumps(r)]
    assert access, "no access-log record"
    assert any(r.get("worker") == 1 for r in records), "no record forwarded from worker 1"


def test_log_format_json_traceback_is_one_error_record(launcher: Launcher) -> None:
    # The worker's "Exception in ASGI application" record and its traceback: one JSON object at
    # level error (a log shipper's one event), not a record per line at level info.
    port = free_port()
    server = launcher.start_unwatched(*APP, "--port", str(port), "--log-format", "json", "--log-level", "warning")
    wait_listening(port)
    with client() as c:
        assert c.get(f"http://127.0.0.1:{port}/_/error/before-start").status_code == 500
    wait_for(server, lambda log: "Exception in ASGI application" in log)
    assert server.stop() == 0
    records = assert_all_json(server.log())
    ours = [r for r in records if "Exception in ASGI application" in r["message"]]
    assert len(ours) == 1, records
    message = ours[0]["message"]
    assert ours[0]["level"] == "error" and ours[0]["stream"] == "stderr" and "worker" in ours[0], ours[0]
    assert "\nTraceback (most recent call last):\n" in message, message
    assert 'testapp.py", line' in message and "\nRuntimeError: failing before http.response.start, on purpose" in message
    assert not [r for r in records if r["message"].startswith(("Traceback", "  File"))], records


def test_a_record_longer_than_the_line_limit_keeps_its_end(launcher: Launcher) -> None:
    # A traceback of an exception with a 100,000-character message: the record is cut (64 KiB of
    # its start are kept), but its end, the exception line, is not.
    port = free_port()
    server = launcher.start_unwatched("conformance9_app:app", "--app-dir", str(APPS_DIR), "--port", str(port),
                                      "--log-format", "json", "--log-level", "warning")
    wait_listening(port)
    with client() as c:
        assert c.get(f"http://127.0.0.1:{port}/raise-long").status_code == 500
    wait_for(server, lambda log: "THE-END" in log)
    assert server.stop() == 0
    records = [r for r in assert_all_json(server.log()) if "Exception in ASGI application" in r["message"]]
    assert len(records) == 1, records
    record = records[0]
    assert record["level"] == "error" and record.get("cut") is True and record["line_bytes"] > 100_000
    assert "bytes cut ...]" in record["message"]
    assert record["message"].rstrip().endswith("THE-END"), record["message"][-300:]


def test_log_format_json_with_a_uvicorn_flag(launcher: Launcher) -> None:
    # The "--loop ... ignored" message is stderr output too.
    server = launcher.start(*APP, "--port", "0", "--log-format", "json", "--loop=asyncio")
    assert server.stop() == 0
    records = assert_all_json(server.log())
    assert any("--loop" in r["message"] for r in records)


def test_log_format_json_when_the_app_fails_to_import(launcher: Launcher) -> None:
    # The reason the gateway exits is the line a log shipper most needs to parse.
    result = launcher.run("broken_app:app", "--app-dir", str(APPS_DIR), "--port", "0", "--log-format", "json")
    assert result.returncode == 3
    records = assert_all_json(result.stderr)
    assert any("broken_app fails to import on purpose" in r.get("message", "") for r in records)


def test_log_format_bad_value(launcher: Launcher) -> None:
    result = launcher.run(*APP, "--port", "0", "--log-format", "xml")
    assert result.returncode == 2
    assert "xml" in result.stderr


# --- --access-log, --no-access-log, --access-log-format ---------------------------------------


@pytest.mark.parametrize("flags, logged", [([], True), (["--access-log"], True), (["--no-access-log"], False)])
def test_access_log_on_off(launcher: Launcher, flags: list[str], logged: bool) -> None:
    server = launcher.start(*APP, "--port", "0", *flags)
    path = f"/access-{uuid.uuid4().hex}"
    with client() as c:
        assert c.get(f"{server.url}{path}").status_code == 200
    log = wait_for(server, lambda log: path in log, timeout=2.0 if logged else 1.0)
    assert (path in log) is logged, log


def raw_get(port: int, target: str, version: str = "1.1") -> tuple[int, int, int]:
    """(local port, status, body length) of one request on its own connection."""
    with RawConnection.tcp("127.0.0.1", port) as conn:
        conn.send(f"GET {target} HTTP/{version}\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        response = conn.read_response()
        return conn.local_port, response.status, len(response.body)


def access_message(server: Launched, marker: str, log_format: str) -> str:
    log = wait_for(server, lambda log: marker in log)
    lines = [line for line in log.splitlines() if marker in line]
    assert len(lines) == 1, f"{len(lines)} lines with {marker!r}:\n{log}"
    if log_format == "json":
        return json.loads(lines[0])["message"]
    match = re.fullmatch(r"\d\d:\d\d:\d\d INF (.*)", lines[0])
    assert match, f"unexpected access line {lines[0]!r}"
    return match.group(1)


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_access_log_format_exact_line(launcher: Launcher, log_format: str) -> None:
    fmt = '%(client_addr)s "%(request_line)s" %(status)s %(bytes)s'
    server = launcher.start(*APP, "--port", "0", "--access-log-format", fmt, "--log-format", log_format, "--no-use-colors")
    marker = uuid.uuid4().hex
    local, status, size = raw_get(server.port, f"/fmt-{marker}?q=1")
    assert status == 200
    assert access_message(server, marker, log_format) == f'127.0.0.1:{local} "GET /fmt-{marker}?q=1 HTTP/1.1" 200 {size}'
    # A response without a body, over HTTP/1.0.
    local, status, size = raw_get(server.port, f"/_/status?code=204&m={marker}x", version="1.0")
    assert (status, size) == (204, 0)
    assert access_message(server, marker + "x", log_format) == (
        f'127.0.0.1:{local} "GET /_/status?code=204&m={marker}x HTTP/1.0" 204 0'
    )


def test_access_log_format_other_fields(launcher: Launcher) -> None:
    fmt = "%(client)s %(method)s %(path)s %(http_version)s %(status)s %(worker)s %(duration_ms)s %(duration)s"
    server = launcher.start(*APP, "--port", "0", "--access-log-format", fmt, "--no-use-colors")
    marker = uuid.uuid4().hex
    raw_get(server.port, f"/_/slow?seconds=0.2&m={marker}")
    message = access_message(server, marker, "console")
    match = re.fullmatch(rf"127\.0\.0\.1 GET /_/slow\?seconds=0\.2&m={marker} 1\.1 200 0 (\d+\.\d{{3}}) (\d+\.\d{{6}})", message)
    assert match, message
    assert float(match.group(1)) >= 200 and float(match.group(2)) >= 0.2


def test_default_access_log_duration_is_in_seconds(launcher: Launcher) -> None:
    """The default line's duration is in seconds, as %(duration)s and the timeout options (it was
    zerolog's milliseconds, unnamed)."""
    server = launcher.start(*APP, "--port", "0", "--no-use-colors", "--log-format", "json")
    marker = uuid.uuid4().hex
    raw_get(server.port, f"/_/slow?seconds=0.3&m={marker}")
    log = wait_for(server, lambda log: marker in log)
    line = json.loads(next(line for line in log.splitlines() if marker in line))
    assert 0.3 <= line["duration"] < 5, line


@pytest.mark.parametrize("fmt", [None, "%(client_addr)s %(path)s"], ids=["default", "format"])
def test_access_log_names_the_client_a_trusted_proxy_named(launcher: Launcher, fmt: str | None) -> None:
    # As uvicorn, whose proxy middleware rewrites the client before the access log: the client in
    # the line is the scope's (X-Forwarded-For of a trusted peer, 127.0.0.1 by default).
    extra = ["--access-log-format", fmt] if fmt else []
    server = launcher.start(*APP, "--port", "0", "--no-use-colors", "--log-format", "json", *extra)
    marker = uuid.uuid4().hex
    with RawConnection.tcp("127.0.0.1", server.port) as conn:
        conn.send(f"GET /xff-{marker} HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.7:4711\r\n"
                  "Connection: close\r\n\r\n".encode())
        assert conn.read_response().status == 200
    log = wait_for(server, lambda log: marker in log)
    line = json.loads(next(line for line in log.splitlines() if marker in line))
    if fmt:
        assert line["message"] == f"198.51.100.7:4711 /xff-{marker}"
    else:
        assert (line["client"], line["port"]) == ("198.51.100.7", 4711), line


def test_access_log_format_unknown_field(launcher: Launcher) -> None:
    result = launcher.run(*APP, "--port", "0", "--access-log-format", "%(client)s %(referer)s")
    assert result.returncode == 2
    assert "referer" in result.stderr


# --- --use-colors, --no-use-colors ------------------------------------------------------------


@pytest.mark.parametrize("flags, colored", [(["--use-colors"], True), (["--no-use-colors"], False), ([], False)])
def test_colors(launcher: Launcher, flags: list[str], colored: bool) -> None:
    # stderr is a file here, not a terminal: no colours by default.
    server = launcher.start(*APP, "--port", "0", *flags)
    with client() as c:
        c.get(f"{server.url}/colors")
    server.stop()
    assert ("\x1b[" in server.log()) is colored, server.log()[:2000]


# --- the app's own output ---------------------------------------------------------------------


def worker_ids(log: str) -> dict[int, int]:
    """pid -> worker id, from the "worker ready pid=P worker=N" lines."""
    return {int(pid): int(wid) for pid, wid in re.findall(r"worker ready pid=(\d+) worker=(\d+)", log)}


def test_app_output_is_forwarded_with_the_worker_id(launcher: Launcher) -> None:
    server = launcher.start("chatty_app:app", "--app-dir", str(APPS_DIR), "--port", "0", "--workers", "2", "--no-use-colors")
    ids = worker_ids(server.log())
    assert sorted(ids.values()) == [0, 1], server.log()
    for pid, wid in ids.items():
        for text in (f"chatty-app print at import pid={pid}", f"chatty-app warning at import pid={pid}"):
            lines = [line for line in server.log().splitlines() if text in line]
            assert len(lines) == 1, f"{text!r}:\n{server.log()}"
            assert re.search(rf"\bworker={wid}\b", lines[0]), lines[0]
    served = {}
    with client() as c:
        for index in range(6):
            path = f"/chatty-{index}-{uuid.uuid4().hex[:6]}"
            served[path] = int(c.get(f"{server.url}{path}").text)
    for path, pid in served.items():
        for text in (f"chatty-app print for {path} pid={pid}", f"chatty-app warning for {path} pid={pid}"):
            log = wait_for(server, lambda log: text in log)
            lines = [line for line in log.splitlines() if text in line]
            assert len(lines) == 1, f"{text!r}:\n{log}"
            assert re.search(rf"\bworker={ids[pid]}\b", lines[0]), lines[0]


def test_app_output_in_json_logs(launcher: Launcher) -> None:
    server = launcher.start("chatty_app:app", "--app-dir", str(APPS_DIR), "--port", "0", "--log-format", "json")
    with client() as c:
        pid = int(c.get(f"{server.url}/chatty-json").text)
    wait_for(server, lambda log: "chatty-app warning for /chatty-json" in log)
    server.stop()
    records = assert_all_json(server.log())
    for text in (
        f"chatty-app print at import pid={pid}",
        f"chatty-app warning at import pid={pid}",
        f"chatty-app print for /chatty-json pid={pid}",
        f"chatty-app warning for /chatty-json pid={pid}",
    ):
        found = [r for r in records if text in r["message"]]
        assert len(found) == 1, text
        assert found[0].get("worker") == 0, found[0]
