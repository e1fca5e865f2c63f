"""The frame of a long-running process's main(): arguments, log lines, stop on SIGTERM/SIGINT.
Stdlib only (with core.logs), so the gateway worker, its supervisor and the media host share it."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable, Sequence

from core.logs import configure

log = logging.getLogger(__name__)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None, log_name: Callable[[argparse.Namespace], str],
               needs_redis: bool = False) -> argparse.Namespace:
    """The arguments, with --log-level added, and the platform's key=value log lines configured
    (``gateway=`` names the process in each line). ``needs_redis``: --redis-url or REDIS_URL required."""
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if needs_redis and not args.redis_url:
        parser.error("--redis-url or REDIS_URL is required")
    configure(args.log_level, gateway=log_name(args))
    return args


def run_until_signalled(run: Callable[[], int | None], stop: Callable[[], None],
                        loop: asyncio.AbstractEventLoop | None = None) -> int:
    """``run()`` with SIGTERM and SIGINT calling ``stop()`` (on ``loop`` when the process runs one);
    its return value, or 0."""
    def on_signal(signum: int) -> None:
        log.info("signal %s: stopping", signum)
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        if loop is not None:
            loop.add_signal_handler(sig, on_signal, sig)
        else:
            signal.signal(sig, lambda signum, frame: on_signal(signum))
    return run() or 0
