"""Publishing live events to a tenant's WebSocket listeners (dashboards)."""
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .channels_tenancy import tenant_group


def publish_tenant_event(schema_name: str, event: dict) -> None:
    async_to_sync(get_channel_layer().group_send)(
        tenant_group(schema_name, "events"), {"type": "platform.event", "event": event}
    )
