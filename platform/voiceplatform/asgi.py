"""ASGI entry point for daphne: Django for HTTP, Channels for WebSockets."""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceplatform.settings")
django.setup(set_prefix=False)

from .sync_handler import SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up first)
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from core.channels_tenancy import TenantWebsocketMiddleware  # noqa: E402
from media.ws_urls import websocket_urlpatterns as call_stream_websocket_urlpatterns  # noqa: E402
from telephony.metrics.ws_urls import websocket_urlpatterns as metrics_websocket_urlpatterns  # noqa: E402

from .views import healthz  # noqa: E402


def browser_socket(pattern):
    """Sockets opened by our own pages: only from a page on a host we serve (the Origin header), so
    another site cannot ride a signed-in user's session. Agent and relay sockets authenticate by token."""
    return path(str(pattern.pattern), AllowedHostsOriginValidator(pattern.callback), name=pattern.name)


websocket_urlpatterns = [
    *(browser_socket(pattern) for pattern in metrics_websocket_urlpatterns),
    *call_stream_websocket_urlpatterns,
]


async def http(scope, receive, send):
    """Django, except /healthz: answered without Django's middleware (views.healthz)."""
    if scope["path"] == "/healthz":
        return await healthz(scope, receive, send)
    return await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": TenantWebsocketMiddleware(URLRouter(websocket_urlpatterns)),
    }
)
