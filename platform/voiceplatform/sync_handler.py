"""Django's ASGI handler with the middleware and the view run synchronously, in one trip to the
request's thread. Django's own loads the middleware in async mode: every hook of a synchronous
middleware, and then the view, each go from daphne's event loop to a thread and back. Our middleware
and views are all synchronous, so that bought nothing and cost CPU on every request (bench/burst.py
--parts step, web CPU per call). WebSockets (Channels) are not handled here."""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class SyncChainASGIHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        # thread_sensitive: the request's own thread (Django's ThreadSensitiveContext), where its
        # request_started and request_finished handlers run with the same database connection
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
