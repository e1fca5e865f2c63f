"""Log lines as key=value (logfmt), with the call's id on every line about a call.

    ts=2026-11-27T19:02:11.042Z level=INFO logger=telephony.calls.webhooks call_sid=CA… msg="…"

A line is about a call when it is logged inside ``call_context(sid)`` (the recorder, webhook
deliveries, the gateway client), when it passes ``extra={"call_sid": sid}``, or when one of its
arguments is a call sid (or an event dict with a ``call_id``): that last rule covers the many
``log.info("call %s: …", sid)`` lines without touching them. Lines about no call have no call_sid.

settings.LOGGING installs both for every Django process (web, Celery, recorder); the gateway
workers can use ``configure()`` (stdlib only: no Django, nothing heavy in their memory).
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["CallSidFilter", "KeyValueFormatter", "RoutineTaskFilter", "call_context", "configure"]

_current_call: ContextVar[str | None] = ContextVar("call_sid", default=None)
_SID = re.compile(r"CA[0-9a-f]{32}")


@contextmanager
def call_context(sid: str | None) -> Iterator[None]:
    """Every line logged inside (this thread or task) carries call_sid=sid."""
    token = _current_call.set(sid or None)
    try:
        yield
    finally:
        _current_call.reset(token)


def _sid_in(args) -> str | None:
    for arg in args if isinstance(args, tuple) else (args,):
        if isinstance(arg, str) and _SID.fullmatch(arg):
            return arg
        if isinstance(arg, dict):
            sid = arg.get("call_id") or arg.get("call_sid") or arg.get("sid")
            if isinstance(sid, str) and sid:
                return sid
    return None


class CallSidFilter(logging.Filter):
    """Sets record.call_sid (None when the line is about no call). Never drops a line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "call_sid", None):
            record.call_sid = _current_call.get() or (_sid_in(record.args) if record.args else None)
        return True


class RoutineTaskFilter(logging.Filter):
    """Celery's lines about routine periodic tasks (beat sending dispatch-dialers every second, the
    worker receiving and finishing it; carrier checks, the unplaced-call sweep, recording retention)
    are DEBUG lines: shown only when the root logger is at DEBUG. What those tasks find (a carrier
    down, a call given up) they log themselves; a task that fails is still an ERROR."""

    ROUTINE = ("dispatch-dialers", "campaigns.tasks.dispatch_dialers", "publish-inventory",
               "telephony.tasks.publish_inventory", "check-carriers", "telephony.tasks.check_carrier",
               "give-up-unplaced-calls", "telephony.calls.tasks.give_up_unplaced_calls",
               "delete-expired-recordings", "telephony.calls.tasks.delete_expired_recordings")
    LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not record.name.startswith(self.LOGGERS):
            return True
        text = " ".join(str(a) for a in record.args) if isinstance(record.args, tuple) else str(record.args or "")
        if isinstance(record.args, dict):
            text = " ".join(str(v) for v in record.args.values())
        if not any(name in text or name in str(record.msg) for name in self.ROUTINE):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def _value(text: str) -> str:
    return text if text and re.fullmatch(r"[\w.:/@+-]+", text) else json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """One line per record: ts, level, logger, [fields…], [call_sid], msg, [exc]."""

    def __init__(self, fields: dict[str, str] | None = None):
        super().__init__()
        self.fields = "".join(f" {k}={_value(str(v))}" for k, v in (fields or {}).items())

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        line = f"ts={stamp} level={record.levelname} logger={_value(record.name)}{self.fields}"
        sid = getattr(record, "call_sid", None)
        if sid:
            line += f" call_sid={_value(sid)}"
        line += f" msg={_value(record.getMessage())}"
        if record.exc_info:
            line += f" exc={_value(self.formatException(record.exc_info))}"
        return line


def configure(level: str | int = "INFO", stream=None, **fields: str) -> None:
    """Outside Django (gateway workers): the same format on stderr, with fixed fields (gateway=…)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter(fields))
    handler.addFilter(CallSidFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
