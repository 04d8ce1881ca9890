"""Command line of the worker: ``python -m python_worker --socket PATH --app module:attr [...]``.

This module owns argument parsing and the check that ``msgpack`` is importable (exit status 4 with a
one-line message when it is not). It imports only the standard library before that check; everything
else lives in :mod:`python_worker.worker`.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

EXIT_NO_MSGPACK = 4

LOG_LEVEL_NAMES = ("critical", "error", "warning", "info", "debug", "trace")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m python_worker",
        description="asgi-gateway worker: serves an ASGI 3 app to the Go gateway over a Unix socket.",
    )
    parser.add_argument("--socket", required=True, metavar="PATH", help="the gateway's Unix socket")
    parser.add_argument("--app", required=True, metavar="MODULE:ATTR", help="the ASGI app, e.g. main:app")
    parser.add_argument("--app-dir", default=None, metavar="DIR",
                        help="directory put first on sys.path (default: the current directory)")
    parser.add_argument("--factory", action="store_true", help="ATTR is a factory: call it with no arguments")
    parser.add_argument("--interface", default="auto", type=str.lower, choices=("auto", "asgi3", "asgi2"),
                        help="how the app is called: asgi3 app(scope, receive, send), asgi2 app(scope)(receive, "
                             "send), auto (default: asgi2 for the shapes only an ASGI 2 app has)")
    parser.add_argument("--worker-id", type=int, default=None, metavar="N", help="the worker's slot number")
    parser.add_argument("--log-level", default="info", type=str.lower, choices=LOG_LEVEL_NAMES)
    parser.add_argument("--log-config", default=None, metavar="FILE",
                        help="a Python logging config applied after the worker's own, as uvicorn's --log-config "
                             "(.json, .yaml/.yml: dictConfig; other: fileConfig)")
    parser.add_argument("--lifespan", default="auto", type=str.lower, choices=("auto", "on", "off"),
                        help="the ASGI lifespan protocol: auto (if the app supports it), on, off (default: auto)")
    parser.add_argument("--ring-fd", type=int, default=None, metavar="N",
                        help="an inherited descriptor of the body ring (shared memory) the gateway made for this "
                             "worker (default: none; bodies go through the socket)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        import msgpack  # noqa: F401
    except ImportError:
        print(
            f"asgi-gateway worker: the Python package 'msgpack' is not installed in {sys.executable} "
            "(pip install msgpack)",
            file=sys.stderr,
        )
        return EXIT_NO_MSGPACK
    from .worker import Options, run

    return run(
        Options(
            socket=args.socket,
            app=args.app,
            app_dir=args.app_dir,
            factory=args.factory,
            interface=args.interface,
            worker_id=args.worker_id,
            log_level=args.log_level,
            lifespan=args.lifespan,
            ring_fd=args.ring_fd,
            log_config=args.log_config,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
