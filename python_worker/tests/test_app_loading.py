"""``load_app``: a zero-argument function given without ``--factory`` is taken for an app factory
(as uvicorn does, with a warning); nothing else is called."""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from python_worker.worker import AppLoadError, load_app

MODULE = """
    async def app(scope, receive, send):
        pass

    def create_app():
        return app

    def create_with_defaults(debug=False, *args, **kwargs):
        return app

    def needs_settings(settings):
        raise AssertionError("called")

    async def async_factory():
        raise AssertionError("called")

    class App:
        def __init__(self):
            raise AssertionError("called")

    instance_calls = []

    class Callable:
        def __call__(self, scope=None, receive=None, send=None):
            instance_calls.append(scope)

    instance = Callable()

    class Asgi2Object:
        def __call__(self, scope):
            async def run(receive, send):
                pass
            return run

    asgi2_instance = Asgi2Object()

    class SyncMiddleware:
        # ASGI 3 by a plain __call__ that returns the wrapped app's coroutine
        def __call__(self, scope, receive, send):
            return app(scope, receive, send)

    sync_middleware = SyncMiddleware()

    class AnyArgs:
        def __call__(self, *args, **kwargs):
            return app(*args, **kwargs)

    any_args = AnyArgs()
"""


@pytest.fixture
def module(tmp_path: Path) -> Iterator[str]:
    name = f"loadmod_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    saved = list(sys.path)
    yield str(tmp_path), name
    sys.path[:] = saved
    sys.modules.pop(name, None)


@pytest.mark.parametrize("attr", ["create_app", "create_with_defaults"])
def test_zero_argument_function_is_a_factory(module: Any, attr: str, caplog: Any) -> None:
    app_dir, name = module
    with caplog.at_level(logging.WARNING, logger="python_worker.worker"):
        app = load_app(f"{name}:{attr}", app_dir)
    assert app is sys.modules[name].app
    assert "ASGI app factory detected" in caplog.text


@pytest.mark.parametrize("attr", ["app", "needs_settings", "async_factory", "App", "instance"])
def test_anything_else_is_not_called(module: Any, attr: str, caplog: Any) -> None:
    app_dir, name = module
    with caplog.at_level(logging.WARNING, logger="python_worker.worker"):
        app = load_app(f"{name}:{attr}", app_dir)
    if attr in ("needs_settings", "App"):
        # The two shapes of an ASGI 2 (double-callable) app: wrapped, and still not called.
        assert type(app).__name__ == "_ASGI2App" and app.app is getattr(sys.modules[name], attr)
    else:
        assert app is getattr(sys.modules[name], attr)
    assert sys.modules[name].instance_calls == []
    assert "factory detected" not in caplog.text


def test_explicit_factory_still_calls(module: Any) -> None:
    app_dir, name = module
    with pytest.raises(AppLoadError, match="Error calling the app factory"):
        load_app(f"{name}:needs_settings", app_dir, factory=True)


@pytest.mark.parametrize("attr, asgi2", [
    ("asgi2_instance", True),  # uvicorn's --interface auto: a plain __call__ is ASGI 2
    ("sync_middleware", False),  # but one of (scope, receive, send) can only be ASGI 3
    ("any_args", False),
])
def test_objects_with_a_plain_call_of_the_scope_only_are_asgi2(module: Any, attr: str, asgi2: bool) -> None:
    app_dir, name = module
    app = load_app(f"{name}:{attr}", app_dir)
    expected = getattr(sys.modules[name], attr)
    if asgi2:
        assert type(app).__name__ == "_ASGI2App" and app.app is expected
    else:
        assert app is expected


def test_interface_option_overrides_the_detection(module: Any) -> None:
    app_dir, name = module
    forced = load_app(f"{name}:app", app_dir, interface="asgi2")
    assert type(forced).__name__ == "_ASGI2App" and forced.app is sys.modules[name].app
    assert load_app(f"{name}:asgi2_instance", app_dir, interface="asgi3") is sys.modules[name].asgi2_instance
