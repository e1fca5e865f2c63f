"""The platform's Django project: settings, URLs, ASGI and Celery wiring, process runner."""
