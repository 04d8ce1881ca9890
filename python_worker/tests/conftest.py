"""Test setup: import the real ``python_worker`` package (not the project directory of the same name,
which is a namespace package when tests run from the repository root), and shared fixtures."""

from __future__ import annotations

import os
import sys

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../python_worker
if sys.path[:1] != [PROJECT_DIR]:
    sys.path.insert(0, PROJECT_DIR)
_mod = sys.modules.get("python_worker")
if _mod is not None and getattr(_mod, "__file__", None) is None:  # a namespace package got imported
    for name in [n for n in sys.modules if n == "python_worker" or n.startswith("python_worker.")]:
        del sys.modules[name]

import pytest  # noqa: E402

from gateway_fake import LOOP_NAMES  # noqa: E402


@pytest.fixture(params=LOOP_NAMES)
def loop_name(request: pytest.FixtureRequest) -> str:
    return request.param
