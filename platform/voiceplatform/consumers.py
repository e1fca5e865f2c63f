"""The tenant's live event stream: what dashboards listen to (GET ws://<tenant host>/ws/events)."""
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django_tenants.utils import get_public_schema_name

from .channels_tenancy import tenant_group


class TenantEventsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        if self.scope["schema_name"] == get_public_schema_name():
            await self.close(code=4404)  # events belong to a tenant: connect to its host
            return
        if not self.scope["user"].is_authenticated:
            await self.close(code=4401)  # sign in on the tenant's host first
            return
        self.group = tenant_group(self.scope["schema_name"], "events")
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "tenant": self.scope["schema_name"]})

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong", "id": content.get("id")})

    async def platform_events(self, message):
        for event in message["events"]:  # one WebSocket message each, in order
            await self.send_json(event)
