"""Publishing live events to a tenant's WebSocket listeners (dashboards)."""
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from core.channels_tenancy import tenant_group


def publish_tenant_event(schema_name: str, event: dict) -> None:
    publish_tenant_events([(schema_name, event)])


def publish_tenant_events(events: list[tuple[str, dict]]) -> None:
    """Each (schema, event) to that tenant's listeners, in order, with one hop into asyncio."""
    if not events:
        return

    async def send_all():
        layer = get_channel_layer()
        for schema_name, event in events:
            await layer.group_send(tenant_group(schema_name, "events"), {"type": "platform.event", "event": event})

    async_to_sync(send_all)()
