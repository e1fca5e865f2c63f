"""The Celery application. tenant-schemas-celery sends the current schema with every task and
switches to it in the worker, so a task runs against the tenant that enqueued it."""
import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceplatform.settings")

app = CeleryApp("voiceplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="voiceplatform.ping")
def ping() -> str:
    return "pong"
