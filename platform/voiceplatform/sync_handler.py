"""Django's ASGI handler with each request's synchronous part (signals, middleware, view, closing the
response) run in one trip to a thread of a fixed set. Django's own handler loads the middleware in
async mode and, per request, starts a thread of its own and goes to it and back three or more times
(request_started, the middleware and view, the response's close). Our middleware and views are all
synchronous, so that bought nothing and cost CPU on every request (bench/burst.py --parts step, web
CPU per create). WebSockets (Channels) are not handled here.

The threads are as many as the database pool's connections (DATABASE_POOL_SIZE): a request holds at
most one, so a burst waits here for a thread, not for a connection until the pool's timeout.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.urls import set_script_prefix

DEFAULT_THREADS = 16


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        threads = settings.DATABASES["default"].get("OPTIONS", {}).get("pool", {}).get("max_size") or DEFAULT_THREADS
        self.threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="request")

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            response = await sync_to_async(self.respond, thread_sensitive=False, executor=self.threads)(scope, body_file)
            if not response.streaming:
                return await self.send_response(response, send)
            # A streamed body (a file) is read while it is sent: closed after, in a thread of the
            # request's own, as Django's handler does (its sync iterator is read there too).
            async with ThreadSensitiveContext():
                try:
                    await self.send_response(response, send)
                finally:
                    await sync_to_async(response.close, thread_sensitive=True)()
        finally:
            body_file.close()

    def respond(self, scope, body_file):
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        if not response.streaming:
            # request_finished (the database connection goes back to the pool) before the bytes are
            # sent: they are all in memory, and the thread is free for the next request sooner
            response.close()
        return response
