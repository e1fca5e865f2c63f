"""WebSocket routes of call media for agents that connect in (see stream_relay.py)."""
from django.urls import path

from .stream_relay import AgentLeg, GatewayLeg

websocket_urlpatterns = [
    path("ws/v1/calls/<str:call_sid>/stream", AgentLeg.as_asgi()),
    path("ws/internal/calls/<str:schema_name>/<str:call_sid>/relay", GatewayLeg.as_asgi()),
]
