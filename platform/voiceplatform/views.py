import json

from django.shortcuts import render

from .health import platform_health


async def healthz(scope, receive, send) -> None:
    """GET /healthz, served by asgi.py before Django's middleware: it must answer (JSON, 200 or 503)
    when PostgreSQL is down, which the tenant middleware's domain lookup is not."""
    report = await platform_health()
    body = json.dumps(report).encode()
    await send({"type": "http.response.start", "status": 200 if report["ok"] else 503, "headers": [
        (b"content-type", b"application/json"), (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})


def home(request):
    return render(request, "home.html", {"tenant": getattr(request, "tenant", None)})
