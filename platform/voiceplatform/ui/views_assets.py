"""The UI's own stylesheet and script, served by Django from ui/static/ui/ (daphne serves no static
files by itself, and base.html is also rendered by views that are not the UI's). Short-cached with an
ETag, so a changed file is picked up within minutes and a page load costs a 304."""
from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from django.http import Http404, HttpResponse, HttpResponseNotModified
from django.views.decorators.http import require_GET

FOLDER = Path(__file__).resolve().parent / "static" / "ui"
TYPES = {"ui.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}


@cache
def _asset(name: str) -> tuple[bytes, str]:
    body = (FOLDER / name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


@require_GET
def asset(request, name: str):
    if name not in TYPES:
        raise Http404("no such asset")
    body, etag = _asset(name)
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(body, content_type=TYPES[name])
    response["ETag"] = etag
    response["Cache-Control"] = "public, max-age=300"
    response["X-Content-Type-Options"] = "nosniff"
    return response
