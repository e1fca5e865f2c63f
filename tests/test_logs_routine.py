"""Quiet logs: the beat's periodic tasks (the once-a-second dispatch of the dialers, the carrier
checks every 10 s, and the worker receiving and finishing them) are DEBUG lines, through the
platform's real logging configuration; other tasks' lines (a webhook delivered) stay at INFO."""
import io
import logging
from logging.config import dictConfig

from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS
from django.conf import settings


def _lines(root_level: str) -> list[str]:
    stream = io.StringIO()
    dictConfig(settings.LOGGING)
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)
    logging.getLogger().setLevel(root_level)
    try:
        beat = logging.getLogger("celery.beat")
        beat.info("Scheduler: Sending due task %s (%s)", "dispatch-dialers", "campaigns.tasks.dispatch_dialers")
        beat.info("Scheduler: Sending due task %s (%s)", "check-carriers", "telephony.tasks.check_carriers")
        dispatch = {"name": "campaigns.tasks.dispatch_dialers", "id": "1", "runtime": 0.01, "return_value": None}
        logging.getLogger("celery.worker.strategy").info(LOG_RECEIVED, dispatch)
        logging.getLogger("celery.app.trace").info(LOG_SUCCESS, dispatch)
        webhook = {"name": "telephony.calls.tasks.deliver_webhook", "id": "2", "runtime": 0.2, "return_value": None}
        logging.getLogger("celery.app.trace").info(LOG_SUCCESS, webhook)
    finally:
        dictConfig(settings.LOGGING)
    return stream.getvalue().splitlines()


def test_periodic_tasks_are_logged_only_at_debug():
    quiet = _lines("INFO")
    assert len(quiet) == 1, quiet
    assert "deliver_webhook" in quiet[0] and "level=INFO" in quiet[0]
    chatty = _lines("DEBUG")
    routine = [line for line in chatty if "dispatch" in line or "check-carriers" in line]
    assert len(routine) == 4 and all("level=DEBUG" in line for line in routine)
