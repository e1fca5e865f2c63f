"""The platform's Django project: settings, URLs, ASGI and Celery wiring, process runner."""
# Loaded with the project so that every process (web, workers, the recorder) sends the apps'
# shared_task tasks through the tenant-aware Celery app (Celery's documented Django layout).
from .celery import app as celery_app

__all__ = ("celery_app",)
