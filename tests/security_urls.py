"""The platform's URLs plus an API view with a bug in it (tests/test_security_api.py)."""
from django.urls import path

from voiceplatform.urls import urlpatterns as platform_urlpatterns


def broken_view(request):
    raise RuntimeError("a bug with SECRET details in its message")


urlpatterns = [path("api/v1/broken", broken_view), path("broken-page", broken_view), *platform_urlpatterns]
