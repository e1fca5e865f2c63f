"""API clients get JSON errors, never an HTML page (and never Django's debug page, even with DEBUG on):
whatever answered an /api/ or /2010-04-01/ request with an HTML error - a 404 from the URL
resolver, a 500, CSRF - is replaced by {"detail": …, "status": …} (on /2010-04-01/, Twilio's body:
{"code", "message", "more_info", "status"})."""
from __future__ import annotations

import logging
from http import HTTPStatus

from django.http import JsonResponse

API_PREFIXES = ("/api/", "/2010-04-01/")
log = logging.getLogger(__name__)


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


class ApiErrorsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (response.status_code >= 400 and is_api_path(request.path)
                and not response.get("Content-Type", "").startswith("application/json")):
            status = response.status_code
            if request.path.startswith("/2010-04-01/"):
                from telephony.calls.twilio_api import STATUS_CODES, error_body

                phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "error"
                return JsonResponse(error_body(STATUS_CODES.get(status, 20001 if status < 500 else 20500), phrase,
                                               status), status=status)
            return JsonResponse({"detail": HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_
                                 else "error", "status": status}, status=status)
        return response

    def process_exception(self, request, exception):
        if not is_api_path(request.path):
            return None
        log.exception("unhandled error on %s %s", request.method, request.path)
        return JsonResponse({"detail": "Internal Server Error", "status": 500}, status=500)
