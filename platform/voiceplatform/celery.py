"""The Celery application. tenant-schemas-celery sends the current schema with every task and
switches to it in the worker, so a task runs against the tenant that enqueued it."""
import os

from celery.signals import setup_logging
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceplatform.settings")

app = CeleryApp("voiceplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="voiceplatform.ping")
def ping() -> str:
    return "pong"


@setup_logging.connect
def keep_platform_logging(loglevel=None, **_):
    """Workers and beat log like every other process (settings.LOGGING), not in Celery's format."""
    import logging
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)
