"""The worker process: logging, app loading, event loop, signals, connecting to the gateway, serving.

This module owns the process around the connection: it configures stdlib logging (and applies a
``--log-config`` file on top, as uvicorn does), imports the ASGI
app the way uvicorn's ``importer`` does (with one-line error messages), runs the lifespan startup,
connects to the gateway's Unix socket and sends the HELLO (or, when the app could not be loaded or its
startup failed, a HELLO with ``error`` and exit status 3), runs the
:class:`~python_worker.connection.Connection` on uvloop when it can be imported (asyncio otherwise),
ignores SIGINT (the gateway owns Ctrl-C), drains on SIGTERM and runs the lifespan shutdown at the end.
With the C module built, it lets asyncio's task registry add and drop tasks in C
(:func:`speed_up_task_registry`).
Given ``--ring-fd``, it maps the body ring (SPEC §6) first thing and says so in its HELLO's
``features``; a descriptor that is not a usable ring is logged, and the worker runs without one.

Exit status: 0 when the gateway closed the connection, after SIGTERM or SHUTDOWN; 1 after a protocol
error; 3 when the app could not be loaded, its startup failed, the ``--log-config`` file could not be
applied or the socket could not be reached
(``__main__``: 4 when msgpack is missing, 2 for bad arguments).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import os
import platform
import signal
import socket
import sys
import weakref
from dataclasses import dataclass
from typing import Any, Dict, Optional

from .connection import Connection
from .lifespan import Lifespan
from . import protocol
from .protocol import encode_hello_error, encode_hello_worker
from .ring import Ring, RingError

__all__ = [
    "EXIT_OK",
    "EXIT_PROTOCOL_ERROR",
    "EXIT_LOAD_ERROR",
    "TRACE",
    "LOG_LEVELS",
    "AppLoadError",
    "Options",
    "configure_logging",
    "apply_log_config",
    "LogConfigError",
    "import_from_string",
    "load_app",
    "map_ring",
    "new_event_loop",
    "run",
    "serve",
    "speed_up_task_registry",
]

EXIT_OK = 0
EXIT_PROTOCOL_ERROR = 1
EXIT_LOAD_ERROR = 3

SHUTDOWN_TIMEOUT = 10.0
TRACE = 5
LOG_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}
LOG_FORMAT = "%(levelname)s [%(name)s] %(message)s"

logger = logging.getLogger("python_worker.worker")


@dataclass
class Options:
    socket: str
    app: str
    app_dir: Optional[str] = None
    factory: bool = False
    interface: str = "auto"  # or "asgi3", "asgi2"
    worker_id: Optional[int] = None
    log_level: str = "info"
    lifespan: str = "auto"
    ring_fd: Optional[int] = None
    log_config: Optional[str] = None


class OneLineFormatter(logging.Formatter):
    """``LEVEL [logger] message``, one line per record: the lines of a multi-line record (its
    traceback) are joined with CR, which the gateway turns back into line breaks inside one log
    entry, so that the traceback keeps the record's level (and is one record in JSON logs)."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\r\n", "\r").replace("\n", "\r")


def configure_logging(level: str) -> None:
    """stdlib logging on stderr, ``LEVEL [logger] message`` (the gateway prefixes the worker id)."""
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(LOG_LEVELS[level])


class LogConfigError(Exception):
    """``--log-config`` could not be applied; ``str(exc)`` says which file and why, in one line."""


def _read_dict_config(path: str) -> Dict[str, Any]:
    """The mapping in a ``.json`` or ``.yaml``/``.yml`` logging config file."""
    with open(path, encoding="utf-8") as f:
        if path.endswith(".json"):
            config = json.load(f)
        else:
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise LogConfigError(
                    f"--log-config {path}: a YAML file needs PyYAML, which is not installed in {sys.executable} "
                    "(pip install PyYAML)"
                ) from None
            config = yaml.safe_load(f)
    if not isinstance(config, dict):
        raise LogConfigError(f"--log-config {path}: the file must hold a mapping (logging.config's dict schema)")
    return config


def apply_log_config(path: str) -> None:
    """Apply a Python logging configuration file on top of :func:`configure_logging`, as uvicorn's
    ``--log-config`` does: ``.json`` and ``.yaml``/``.yml`` files go to :func:`logging.config.dictConfig`
    (YAML needs PyYAML), any other to :func:`logging.config.fileConfig` (with
    ``disable_existing_loggers=False``). What the file leaves out keeps the worker's setup (a dict
    config without ``root`` keeps the stderr handler and the ``--log-level``).

    The worker's own loggers (``python_worker.*``, which log the app's exceptions) are never left
    disabled by a config's ``disable_existing_loggers``: the file decides where their records go and
    how they look, not whether an app error is logged at all.
    """
    import logging.config

    try:
        if path.endswith((".json", ".yaml", ".yml")):
            logging.config.dictConfig(_read_dict_config(path))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except LogConfigError:
        raise
    except Exception as exc:  # json, yaml, configparser and logging.config errors alike
        # logging.config wraps the error that says what to fix ("Cannot resolve 'no.such.Handler':
        # No module named 'no'") in one that names the handler: both are said.
        text = _describe(exc)
        seen = {id(exc)}
        inner = exc.__cause__ or exc.__context__
        while inner is not None and id(inner) not in seen:
            seen.add(id(inner))
            text += f" (caused by {_describe(inner)})"
            inner = inner.__cause__ or inner.__context__
        raise LogConfigError(f"--log-config {path}: {text}") from exc
    for name, obj in list(logging.Logger.manager.loggerDict.items()):
        if (name == "python_worker" or name.startswith("python_worker.")) and isinstance(obj, logging.Logger):
            obj.disabled = False


# -------------------------------------------------------------------------------------------------
# Loading the app


class AppLoadError(Exception):
    """The app could not be loaded; ``str(exc)`` is one line for a person, ``cause`` the exception."""

    def __init__(self, message: str, cause: Optional[BaseException] = None, detail: str = "") -> None:
        super().__init__(message)
        #: the exception whose traceback is worth printing, if any
        self.cause = cause
        #: the Python error behind a message that does not show it (for the log line only)
        self.detail = detail


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def import_from_string(import_str: str) -> Any:
    """``"module:attr.sub"`` → the object, like ``uvicorn.importer.import_from_string``."""
    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise AppLoadError(f'Import string "{import_str}" must be in format "<module>:<attribute>".')
    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_str or module_str.startswith(missing + "."):
            raise AppLoadError(f'Could not import module "{module_str}".', detail=_describe(exc)) from None
        raise AppLoadError(
            f'Could not import module "{module_str}": it imports "{missing}", which was not found '
            f"({_describe(exc)}).",
            exc,
        ) from None
    except BaseException as exc:  # noqa: B036 - SystemExit in a module body is a load error too
        raise AppLoadError(_describe(exc), exc) from None
    instance: Any = module
    try:
        for attr_str in attrs_str.split("."):
            instance = getattr(instance, attr_str)
    except AttributeError:
        raise AppLoadError(f'Attribute "{attrs_str}" not found in module "{module_str}".') from None
    return instance


def load_app(import_str: str, app_dir: Optional[str] = None, factory: bool = False, interface: str = "auto") -> Any:
    """Put ``app_dir`` (default: the current directory) first on ``sys.path`` and load the app,
    as an ASGI 3 callable (an ASGI 2 app, ``interface`` "asgi2" or recognised under "auto", is
    wrapped)."""
    sys.path.insert(0, os.path.abspath(app_dir if app_dir is not None else os.getcwd()))
    app = import_from_string(import_str)
    if not factory and _looks_like_factory(app):
        # As uvicorn: a function that takes no arguments cannot be an ASGI app; it makes one.
        logger.warning("ASGI app factory detected. Using it, but please consider setting the --factory flag explicitly.")
        factory = True
    if factory:
        if not callable(app):
            raise AppLoadError(f'The app factory "{import_str}" is not callable.')
        try:
            app = app()
        except BaseException as exc:  # noqa: B036
            raise AppLoadError(f'Error calling the app factory "{import_str}": {_describe(exc)}', exc) from None
    if not callable(app):
        if factory and inspect.iscoroutine(app):
            app.close()  # (never awaited: no warning about it)
            raise AppLoadError(f'The app factory "{import_str}" is async: it must be a plain function that returns the app.')
        if factory:
            raise AppLoadError(f'The app factory "{import_str}" returned a {type(app).__name__}, which is not an ASGI app (not callable).')
        raise AppLoadError(f'The ASGI app "{import_str}" is not callable (it is a {type(app).__name__}).')
    if interface == "asgi2":
        return _ASGI2App(app)
    if interface == "auto" and _is_asgi2(app):
        # asgi.rst, Legacy Applications: servers "are encouraged to support both types". (As
        # uvicorn's --interface auto, but only for the shapes that cannot be an ASGI 3 app.)
        logger.info("ASGI 2 (double-callable) app detected: it is called as app(scope)(receive, send)")
        app = _ASGI2App(app)
    return app


def _is_asgi2(obj: Any) -> bool:
    """Whether ``obj`` is an ASGI 2 (double-callable) application: a class that is not itself
    awaitable (``App(scope)`` makes the instance that is called with receive and send), a plain
    (not async) function of one positional parameter (scope), or an object whose plain ``__call__``
    takes that one parameter. (A plain callable of three parameters, or of ``*args``, that returns a
    coroutine, as some middleware is, stays ASGI 3.)"""
    if inspect.isclass(obj):
        return not hasattr(obj, "__await__")
    call: Any
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        call = obj
    elif not inspect.isroutine(obj):
        call = getattr(type(obj), "__call__", None)
        if not inspect.isfunction(call):
            return False  # (a callable type of C: nothing to tell it by)
    else:
        return False
    if inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call):
        return False
    try:
        parameters = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return False
    return len(parameters) == 1 and parameters[0].kind in (parameters[0].POSITIONAL_ONLY, parameters[0].POSITIONAL_OR_KEYWORD)


class _ASGI2App:
    """An ASGI 2 application as an ASGI 3 one; its scopes say ``asgi["version"]`` "2.0", the
    version of the interface it is served with (as uvicorn's ``--interface asgi2``)."""

    __slots__ = ("app",)

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["asgi"] = {**scope.get("asgi", {}), "version": "2.0"}
        instance = self.app(scope)
        await instance(receive, send)


def _looks_like_factory(obj: Any) -> bool:
    """Whether ``obj`` is a plain (not async) function callable with no arguments: never an ASGI
    app (which takes scope, receive and send), so an app factory given without ``--factory``.
    (uvicorn calls any app with no arguments to find out; this asks the signature instead, so
    nothing is called that was not meant to be.)"""
    if not inspect.isfunction(obj) or inspect.iscoroutinefunction(obj) or inspect.isasyncgenfunction(obj):
        return False
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters
    )


def _app_traceback(exc: BaseException) -> BaseException:
    """``exc`` with the worker's and importlib's frames cut from the front of its traceback."""
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename != __file__ and not filename.startswith("<frozen importlib") and (
            os.path.basename(os.path.dirname(filename)) != "importlib"
        ):
            return exc.with_traceback(tb)
        tb = tb.tb_next
    return exc  # nothing of the app's (a SyntaxError): keep all


def _send_hello_error(path: str, message: str) -> None:
    """Connect (blocking), send the HELLO carrying ``error``, and close."""
    frame = encode_hello_error(os.getpid(), message)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(path)
            sock.sendall(frame)
            sock.shutdown(socket.SHUT_WR)
            # Read what the gateway sent (its HELLO) until it closes, so that closing with unread data
            # does not turn into a reset on its side.
            sock.settimeout(2.0)
            while sock.recv(65536):
                pass
    except socket.timeout:
        pass
    except OSError as exc:
        logger.error("cannot connect to the gateway socket %s: %s", path, exc)


# -------------------------------------------------------------------------------------------------
# Running


def map_ring(fd: int) -> Optional[Ring]:
    """The body ring the gateway passed as descriptor ``fd``, or None (logged) if it cannot be used."""
    try:
        ring = Ring.from_fd(fd)
    except RingError as exc:
        logger.warning("cannot use the body ring (--ring-fd %d): %s; running without it", fd, exc)
        return None
    logger.debug("body ring mapped: %d bytes per direction", ring.size)
    return ring


def speed_up_task_registry() -> bool:
    """Let asyncio's task registry take tasks in and out in C; returns whether it does.

    CPython (3.9 to 3.13) keeps every Task in a ``weakref.WeakSet`` (what ``asyncio.all_tasks()``
    lists): each new Task calls the set's ``add`` and each dying one its ``_remove`` callback, both
    Python code, about a twentieth of the worker's CPU per request. The C module's
    ``weakset_hooks`` does exactly what those two do; they are set as that one set's instance
    attributes (the method lookup of ``_asyncio`` finds them first). Nothing changes without the C
    module, on a Python whose registry is not such a set, or if a check (a task created, listed and
    dropped again) fails, in which case the set is left as it was.
    """
    speedups = protocol.speedups
    registry = _task_registry()
    if speedups is None or not hasattr(speedups, "weakset_hooks") or registry is None:
        return False
    own = vars(registry)
    if "add" in own:  # hooked already (or by someone else)
        return type(own["add"]) is type(speedups.weakset_hooks(registry)[0])
    if not {"data", "_remove", "_pending_removals", "_iterating"} <= own.keys():
        return False
    original_remove = registry._remove
    add, remove = speedups.weakset_hooks(registry)
    registry._remove = remove
    setattr(registry, "add", add)  # (an instance attribute over the method)

    async def listed() -> bool:
        return asyncio.current_task() in registry

    loop = asyncio.new_event_loop()
    try:
        before = len(registry.data)
        ok = loop.run_until_complete(listed()) and len(registry.data) == before
    finally:
        loop.close()
    if not ok:  # pragma: no cover - a Python whose asyncio registers tasks otherwise
        delattr(registry, "add")
        registry._remove = original_remove
    return ok


def _task_registry() -> Any:
    """The ``weakref.WeakSet`` that ``_asyncio`` registers new tasks in, or None."""
    try:
        import _asyncio
    except ImportError:  # pragma: no cover - CPython always has it
        return None
    for name in ("_scheduled_tasks", "_all_tasks"):  # 3.12+, 3.9-3.11
        registry = getattr(_asyncio, name, None)
        if registry is not None and registry is getattr(asyncio.tasks, name, None):
            return registry if type(registry) is weakref.WeakSet else None
    return None


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop can be imported, else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def serve(
    app: Any,
    path: str,
    *,
    lifespan: Optional[Lifespan] = None,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    ring: Optional[Ring] = None,
) -> int:
    """Connect to the gateway at ``path`` and serve ``app`` until the connection ends.

    ``lifespan`` has completed its startup; its state goes into every scope and its shutdown runs
    before the worker exits. ``ring`` is the mapped body ring, if the gateway gave one.
    """
    loop = asyncio.get_running_loop()
    # "small-window": it honours HTTP_REQUEST's flag SMALL_WINDOW (SPEC §3).
    hello = encode_hello_worker(os.getpid(), platform.python_version(), ["ring", "small-window"] if ring is not None else ["small-window"])
    conn = Connection(app, hello, loop=loop, state=lifespan.state if lifespan is not None else None, ring=ring)
    if lifespan is not None:
        conn.before_close = lifespan.shutdown
    try:
        await loop.create_unix_connection(lambda: conn, path)
    except OSError as exc:
        logger.error("cannot connect to the gateway socket %s: %s", path, exc)
        return EXIT_LOAD_ERROR

    def on_sigterm() -> None:
        logger.info("SIGTERM: finishing running requests (up to %gs)", shutdown_timeout)
        loop.create_task(conn.shutdown(shutdown_timeout))

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - not the main thread
        pass
    try:
        hello_map = await conn.handshake
    except ConnectionError:
        logger.error("the gateway closed the connection before its HELLO")
    else:
        logger.debug(
            "connected to the gateway (pid %s, worker %s, max_frame %d, window %d, body ring %s)",
            hello_map.get("pid"), hello_map.get("worker_id"), conn.max_frame, conn.window,
            conn.ring.size if conn.ring is not None else "none",
        )
    await conn.closed
    try:
        loop.remove_signal_handler(signal.SIGTERM)
    except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
        pass
    leftover = [c.task for c in conn.streams.values() if c.task is not None and not c.task.done()]
    if leftover:
        await asyncio.wait(leftover, timeout=2.0)
    if lifespan is not None:  # the gateway closed the connection without SHUTDOWN: still shut down
        try:
            await asyncio.wait_for(lifespan.shutdown(), shutdown_timeout)
        except asyncio.TimeoutError:
            logger.error("application shutdown did not finish within %gs", shutdown_timeout)
    if conn.error is not None:
        return EXIT_PROTOCOL_ERROR
    logger.debug("the connection to the gateway is closed")
    return EXIT_OK


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=2.0))
    loop.run_until_complete(loop.shutdown_asyncgens())


def run(options: Options) -> int:
    """The whole worker process; returns the exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway owns Ctrl-C
    configure_logging(options.log_level)
    if options.log_config is not None:
        try:
            apply_log_config(options.log_config)
        except LogConfigError as exc:
            configure_logging(options.log_level)  # a failed dictConfig may have left logging half set
            logger.error("%s", exc)
            _send_hello_error(options.socket, str(exc))
            return EXIT_LOAD_ERROR
    ring = map_ring(options.ring_fd) if options.ring_fd is not None else None
    try:
        app = load_app(options.app, options.app_dir, options.factory, options.interface)
    except AppLoadError as exc:
        cause = exc.cause
        if cause is not None:
            logger.error("%s", exc, exc_info=_app_traceback(cause))
        elif exc.detail:
            logger.error("%s (%s)", exc, exc.detail)
        else:
            logger.error("%s", exc)
        _send_hello_error(options.socket, str(exc))
        return EXIT_LOAD_ERROR

    speed_up_task_registry()
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        lifespan = Lifespan(app, options.lifespan)
        error = loop.run_until_complete(lifespan.startup())
        if error is not None:
            logger.error("%s", error)
            _send_hello_error(options.socket, error)
            return EXIT_LOAD_ERROR
        logger.info(
            "serving %s (pid %d, Python %s, %s)",
            options.app, os.getpid(), platform.python_version(), type(loop).__module__.split(".")[0],
        )
        return loop.run_until_complete(serve(app, options.socket, lifespan=lifespan, ring=ring))
    finally:
        try:
            _cancel_all(loop)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
