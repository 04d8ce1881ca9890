"""Deployment surface: ``--log-config``, uvicorn's way of configuring the app's Python logging.

The workers apply the file before they import the app (as uvicorn does): ``.json`` and
``.yaml``/``.yml`` through ``logging.config.dictConfig``, any other file through ``fileConfig``. The
app's records come out in the file's format (the gateway forwards the worker's stderr line by line,
with the level a line names); the worker's own loggers, which log the app's exceptions, stay enabled
whatever ``disable_existing_loggers`` says. A file that is missing refuses the configuration (exit 2);
one that does not apply is a startup failure (exit 3) that names it. The gateway's ``--log-level``
does not filter the workers' output again: their logging applies it (or the file decides), and
the app's print() output is always forwarded, as with uvicorn.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import httpx

from gateway_harness import APPS_DIR, REPO_ROOT
from test_deploy_logging import wait_listening
from test_deploy_options import Launched, Launcher, free_port, launcher  # noqa: F401 (fixture)

APP = ("logconfig_app:app", "--app-dir", str(APPS_DIR), "--port", "0", "--no-access-log", "--no-use-colors")


def wait_for(server: Launched, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log within {timeout} s:\n{server.log()}")


def exercise(server: Launched) -> str:
    """A request that logs at info and warning, and one whose app raises; returns the tag."""
    tag = get_tagged(server, "log")
    with httpx.Client(trust_env=False, timeout=10) as client:
        assert client.get(f"{server.url}/error?{tag}").status_code == 500
    return tag


def json_config(tmp_path: Path, fmt: str, stream: str = "stderr", **placement: object) -> Path:
    """A dictConfig file with one stream handler in format fmt; placement says where it goes (the
    root at WARNING unless given: root=..., loggers=..., disable_existing_loggers=...)."""
    placement = placement or {"root": {"level": "WARNING", "handlers": ["h"]}}
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({
        "version": 1,
        "formatters": {"f": {"format": fmt}},
        "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f", "stream": f"ext://sys.{stream}"}},
        **placement,
    }))
    return config


def log_lines(log: str, text: str) -> list[str]:
    return [line for line in log.splitlines() if text in line]


def test_json_dict_config_formats_the_apps_records_and_keeps_app_errors(launcher: Launcher, tmp_path: Path) -> None:
    """A dictConfig whose root is at WARNING with its own format: the app's warning comes out in
    that format (at the gateway's warning level), its info record not at all; the app's exception is
    still logged, by the worker's own logger (created before the file was applied, which
    ``disable_existing_loggers``, true by default, would otherwise silence), with its traceback."""
    config = json_config(tmp_path, "CFGJSON %(levelname)s %(name)s: %(message)s")
    server = launcher.start(*APP, "--log-config", str(config))
    tag = exercise(server)
    log = wait_for(server, f"RuntimeError: failing on purpose {tag}")
    warning = log_lines(log, f"CFGJSON WARNING logconfig_app: app-warning-{tag}")
    assert len(warning) == 1 and " WRN " in warning[0], log
    assert f"app-info-{tag}" not in log, log
    # applied before the app's import: the module logger it made at import time works
    assert "CFGJSON WARNING logconfig_app: logconfig_app imported" in log, log
    error = [line for line in log.splitlines() if line.split(" ", 2)[-1].startswith("CFGJSON ERROR python_worker")]
    assert error and "Exception in ASGI application" in error[0] and " ERR " in error[0], log
    assert server.stop() == 0, server.log()


def test_ini_file_config(launcher: Launcher, tmp_path: Path) -> None:
    """Any other file goes to logging.config.fileConfig (uvicorn passes disable_existing_loggers=False)."""
    config = tmp_path / "logging.ini"
    config.write_text(
        "[loggers]\nkeys=root,app\n\n"
        "[handlers]\nkeys=h\n\n"
        "[formatters]\nkeys=f\n\n"
        "[logger_root]\nlevel=WARNING\nhandlers=h\n\n"
        "[logger_app]\nlevel=INFO\nhandlers=\nqualname=logconfig_app\n\n"
        "[handler_h]\nclass=StreamHandler\nformatter=f\nargs=(sys.stderr,)\n\n"
        "[formatter_f]\nformat=CFGINI [%(levelname)s] %(name)s %(message)s\n"
    )
    server = launcher.start(*APP, "--log-config", str(config))
    tag = exercise(server)
    log = wait_for(server, f"RuntimeError: failing on purpose {tag}")
    info = log_lines(log, f"CFGINI [INFO] logconfig_app app-info-{tag}")
    assert len(info) == 1 and " INF " in info[0], log
    assert len(log_lines(log, f"CFGINI [WARNING] logconfig_app app-warning-{tag}")) == 1, log
    assert server.stop() == 0, server.log()


def test_yaml_config(launcher: Launcher, tmp_path: Path) -> None:
    """.yaml goes to dictConfig through PyYAML (pinned in the test requirements); a path relative to
    the gateway's working directory works (the workers get it made absolute)."""
    config = tmp_path / "logging.yaml"
    config.write_text(
        "version: 1\n"
        "disable_existing_loggers: false\n"
        "formatters:\n  f:\n    format: 'CFGYAML %(levelname)s %(message)s'\n"
        "handlers:\n  h:\n    class: logging.StreamHandler\n    formatter: f\n    stream: ext://sys.stderr\n"
        "loggers:\n  logconfig_app:\n    level: INFO\n    handlers: [h]\n    propagate: false\n"
    )
    relative = os.path.relpath(config, REPO_ROOT)  # the launcher's working directory
    assert not os.path.isabs(relative)
    server = launcher.start(*APP, "--log-config", relative)
    tag = exercise(server)
    log = wait_for(server, f"CFGYAML WARNING app-warning-{tag}")
    assert len(log_lines(log, f"CFGYAML INFO app-info-{tag}")) == 1, log
    # the worker's own records keep its format (the file left the root logger alone)
    wait_for(server, f"RuntimeError: failing on purpose {tag}")
    assert server.stop() == 0, server.log()


def test_missing_log_config_is_refused(launcher: Launcher, tmp_path: Path) -> None:
    result = launcher.run(*APP, "--log-config", str(tmp_path / "nope.json"))
    assert result.returncode == 2, result.stderr
    assert "--log-config" in result.stderr and "nope.json" in result.stderr, result.stderr


def test_log_config_that_does_not_apply_is_a_startup_failure(launcher: Launcher, tmp_path: Path) -> None:
    """Invalid JSON, or a schema dictConfig refuses: exit 3 (as an app that fails to load), with
    the file named and the reason."""
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"version": 1,')
    result = launcher.run(*APP, "--log-config", str(bad_json))
    assert result.returncode == 3, result.stderr
    assert "bad.json" in result.stderr and "JSONDecodeError" in result.stderr, result.stderr
    bad_schema = tmp_path / "schema.json"
    bad_schema.write_text(json.dumps({"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}))
    result = launcher.run(*APP, "--log-config", str(bad_schema))
    assert result.returncode == 3, result.stderr
    assert "schema.json" in result.stderr and "Unable to configure handler" in result.stderr, result.stderr
    # ... with the cause logging.config wraps, which says what to fix (as uvicorn's traceback shows)
    assert "Cannot resolve 'no.such.Handler'" in result.stderr, result.stderr


def start_quiet(launcher: Launcher, *args: str) -> Launched:
    """Started at a level that hides the "listening on" line: waits for the port instead."""
    port = free_port()
    server = launcher.start_unwatched(*APP[:3], "--port", str(port), *APP[5:], *args)
    wait_listening(port)
    server.where = f"http://127.0.0.1:{port}"
    return server


def get_tagged(server: Launched, path: str) -> str:
    """GET path with a new tag as its query (the app puts the tag in what it logs); returns it."""
    tag = uuid.uuid4().hex[:8]
    with httpx.Client(trust_env=False, timeout=10) as client:
        assert client.get(f"{server.url}/{path}?{tag}").text == "logged"
    return tag


def test_lines_in_the_files_format_are_not_filtered_by_the_gateways_level(launcher: Launcher, tmp_path: Path) -> None:
    """A format without a level word at --log-level warning: the app's warning (and error) records
    that the file's handler writes are forwarded, though the gateway cannot tell their level (it
    used to take them for info lines and drop them, where uvicorn prints them)."""
    config = json_config(tmp_path, "plain %(message)s", stream="stdout")
    server = start_quiet(launcher, "--log-config", str(config), "--log-level", "warning")
    tag = get_tagged(server, "log")
    wait_for(server, f"plain app-warning-{tag}")


def test_debug_records_the_file_asks_for_are_forwarded(launcher: Launcher, tmp_path: Path) -> None:
    """The file sets the app's logger to DEBUG: its debug records reach the log at the default
    --log-level info."""
    config = json_config(tmp_path, "%(levelname)s [%(name)s] %(message)s", disable_existing_loggers=False,
                         loggers={"logconfig_app": {"level": "DEBUG", "handlers": ["h"], "propagate": False}})
    server = launcher.start(*APP, "--log-config", str(config))
    tag = get_tagged(server, "debug")
    line = log_lines(wait_for(server, f"app-debug-{tag}"), f"app-debug-{tag}")
    assert len(line) == 1 and " DBG " in line[0], line


def test_print_output_is_forwarded_at_any_log_level(launcher: Launcher) -> None:
    """print() is not logging: at --log-level warning (and without --log-config) the app's
    stdout and stderr lines still reach the log, as uvicorn leaves them on the terminal."""
    server = start_quiet(launcher, "--log-level", "warning")
    tag = get_tagged(server, "print")
    log = wait_for(server, f"printed-to-stderr-{tag}")
    wait_for(server, f"printed-{tag} ")
    assert "stream=stdout" in log_lines(server.log(), f"printed-{tag} ")[0]
