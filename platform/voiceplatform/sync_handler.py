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

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.http.response import HttpResponseBase
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
            response, closed = await sync_to_async(self.respond, thread_sensitive=False, executor=self.threads)(
                scope, body_file)
            await self.send_response(response, send)
            if not closed:
                await sync_to_async(response.close, thread_sensitive=False, executor=self.threads)()
        finally:
            body_file.close()

    def respond(self, scope, body_file) -> tuple[HttpResponseBase, bool]:
        """The response, and whether it is closed already (all but an asynchronous stream)."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        if response.streaming and response.is_async:
            return response, False
        if response.streaming:
            # Read here, in the view's thread, with its tenant's schema and connection (an export's
            # rows come from a query). Django's handler reads a synchronous stream whole too.
            response.streaming_content = _replay(list(response.streaming_content))
        response.close()  # request_finished: the database connection goes back before the bytes are sent
        return response, True


async def _replay(chunks: list[bytes]):
    for chunk in chunks:
        yield chunk
