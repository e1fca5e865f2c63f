"""The innermost middleware, synchronous only: Django then runs every middleware above it synchronously,
in the one thread that serves the request under daphne. Without it Django runs them in async mode and
sends each hook of each (process_request, process_view, process_response) to a thread and back: about
fifteen round trips between daphne's event loop and a thread per request, part of what an API
call costs under daphne (bench/burst.py, web CPU per call). Views stay synchronous either way."""


class SynchronousMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
