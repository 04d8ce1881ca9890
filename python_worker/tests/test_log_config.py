"""``apply_log_config`` (the worker's ``--log-config``): which loader a file goes to, the errors it
raises, and the worker's own loggers kept enabled."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Iterator

import pytest

from python_worker.worker import LogConfigError, apply_log_config, configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    configure_logging("info")
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    for name in ("python_worker.cycle", "lc_test_app"):
        logging.getLogger(name).disabled = False


def test_dict_config_keeps_the_workers_loggers_enabled(tmp_path: Path) -> None:
    own = logging.getLogger("python_worker.cycle")
    other = logging.getLogger("lc_test_app")  # an app's logger from before the file: disabled, as by uvicorn
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"version": 1, "root": {"level": "ERROR"}}))
    configure_logging("info")
    apply_log_config(str(config))
    assert not own.disabled
    assert other.disabled
    assert logging.getLogger().level == logging.ERROR


def test_yaml_without_pyyaml_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("version: 1\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml raises ImportError
    with pytest.raises(LogConfigError, match=r"c\.yaml: a YAML file needs PyYAML"):
        apply_log_config(str(config))


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("a.json", "[1, 2]", r"a\.json: the file must hold a mapping"),
        ("b.yml", "- 1\n", r"b\.yml: the file must hold a mapping"),
        ("f.yaml", "", r"f\.yaml: the file must hold a mapping"),
        ("c.json", '{"version": 1,', r"c\.json: JSONDecodeError"),
        ("d.ini", "[loggers]\nkeys=root\n", r"d\.ini: KeyError"),
        ("e.json", '{"version": 2}', r"e\.json: ValueError: Unsupported version: 2"),
        ("g.json", '{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}',
         r"g\.json: ValueError: Unable to configure handler 'h' \(caused by ValueError: Cannot resolve "
         r"'no\.such\.Handler': No module named 'no'"),
    ],
)
def test_errors_name_the_file_and_the_reason(tmp_path: Path, name: str, content: str, match: str) -> None:
    config = tmp_path / name
    config.write_text(content)
    with pytest.raises(LogConfigError, match=match):
        apply_log_config(str(config))
