"""WebSocket routes of the dashboards, for voiceplatform.asgi's websocket_urlpatterns."""
from django.urls import path

from .consumers import PlatformDashboardConsumer, TenantDashboardConsumer

websocket_urlpatterns = [
    path("ws/dashboard", TenantDashboardConsumer.as_asgi()),
    path("ws/platform-dashboard", PlatformDashboardConsumer.as_asgi()),
]
