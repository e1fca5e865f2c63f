from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from .health import platform_health


@never_cache
def healthz(request):
    report = platform_health()
    return JsonResponse(report, status=200 if report["ok"] else 503)


def home(request):
    return render(request, "home.html", {"tenant": getattr(request, "tenant", None)})
