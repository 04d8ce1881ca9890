"""The ASGI lifespan protocol inside the worker (modelled on uvicorn's ``lifespan/on.py``).

This module owns the app's ``lifespan`` call: startup before the worker's HELLO (SPEC: a failed
startup becomes the HELLO ``error``), the ``state`` dict that every request scope gets a shallow copy
of, and shutdown when the worker stops. Modes as uvicorn's ``--lifespan``: ``on`` (errors are errors),
``auto`` (an app that raises before completing startup does not support lifespan: go on without it),
``off`` (never call the app with a lifespan scope).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Optional

__all__ = ["Lifespan", "LIFESPAN_MODES"]

LIFESPAN_MODES = ("auto", "on", "off")

logger = logging.getLogger("python_worker.lifespan")


class Lifespan:
    """Runs one app's lifespan: ``await startup()`` (None or an error), later ``await shutdown()``."""

    def __init__(self, app: Any, mode: str = "auto") -> None:
        if mode not in LIFESPAN_MODES:
            raise ValueError(f"lifespan mode must be one of {LIFESPAN_MODES}, not {mode!r}")
        self.app = app
        self.mode = mode
        #: the lifespan scope's state: copied (shallowly) into every request scope
        self.state: Dict[str, Any] = {}
        self._task: Optional[asyncio.Task] = None
        self._queue: Optional[asyncio.Queue] = None
        self._startup_done: Optional[asyncio.Event] = None
        self._shutdown_done: Optional[asyncio.Event] = None
        self._startup_failed = False
        self._shutdown_failed = False
        self._failure_message = ""
        self._error: Optional[BaseException] = None
        self._shutdown_started = False

    async def startup(self) -> Optional[str]:
        """Run the startup; return None when the worker may serve, else the error (one line)."""
        if self.mode == "off":
            return None
        self._queue = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        logger.debug("waiting for application startup")
        self._queue.put_nowait({"type": "lifespan.startup"})
        self._task = asyncio.get_running_loop().create_task(self._main())
        await self._startup_done.wait()
        if self._startup_failed:
            text = f": {self._failure_message}" if self._failure_message else "."
            return f"Application startup failed{text}"
        if self._error is not None and self.mode == "on":
            return f"Application startup failed: {type(self._error).__name__}: {self._error}"
        logger.debug("application startup complete")
        return None

    async def shutdown(self) -> None:
        """Run the shutdown (once; nothing when startup did not complete or lifespan is unsupported)."""
        if self._task is None or self._error is not None:
            return
        if self._shutdown_started:  # a second caller waits for the same shutdown
            await self._shutdown_done.wait()  # type: ignore[union-attr]
            return
        if self._task.done():
            return
        self._shutdown_started = True
        assert self._queue is not None and self._shutdown_done is not None
        logger.debug("waiting for application shutdown")
        self._queue.put_nowait({"type": "lifespan.shutdown"})
        await self._shutdown_done.wait()
        if self._shutdown_failed or (self._error is not None and self.mode == "on"):
            logger.error("Application shutdown failed.")
        else:
            logger.debug("application shutdown complete")

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as exc:  # noqa: B036
            self._error = exc
            if self._startup_failed or self._shutdown_failed:
                pass
            elif self.mode == "auto" and not self._startup_done.is_set():  # type: ignore[union-attr]
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
        finally:
            self._startup_done.set()  # type: ignore[union-attr]
            self._shutdown_done.set()  # type: ignore[union-attr]

    async def receive(self) -> Dict[str, Any]:
        assert self._queue is not None
        return await self._queue.get()

    async def send(self, message: Dict[str, Any]) -> None:
        mtype = message["type"]
        assert self._startup_done is not None and self._shutdown_done is not None
        if mtype == "lifespan.startup.complete" and not self._startup_done.is_set():
            self._startup_done.set()
        elif mtype == "lifespan.startup.failed" and not self._startup_done.is_set():
            self._startup_failed = True
            self._failure_message = str(message.get("message") or "")
            if self._failure_message:
                logger.error("%s", self._failure_message)
            self._startup_done.set()
        elif mtype == "lifespan.shutdown.complete" and self._shutdown_started and not self._shutdown_done.is_set():
            self._shutdown_done.set()
        elif mtype == "lifespan.shutdown.failed" and self._shutdown_started and not self._shutdown_done.is_set():
            self._shutdown_failed = True
            if message.get("message"):
                logger.error("%s", message["message"])
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"Unexpected ASGI lifespan message '{mtype}'.")
