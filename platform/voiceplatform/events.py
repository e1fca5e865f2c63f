"""Publishing live events to a tenant's WebSocket listeners (dashboards)."""
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from .channels_tenancy import tenant_group


def publish_tenant_event(schema_name: str, event: dict) -> None:
    publish_tenant_events([(schema_name, event)])


def publish_tenant_events(events: list[tuple[str, dict]]) -> None:
    """Each (schema, event) to that tenant's listeners, in order, with one hop into asyncio and one
    channel-layer message per tenant (a group send costs a few Redis round trips however big)."""
    if not events:
        return
    by_tenant: dict[str, list[dict]] = {}
    for schema_name, event in events:
        by_tenant.setdefault(schema_name, []).append(event)

    async def send_all():
        layer = get_channel_layer()
        for schema_name, tenant_events in by_tenant.items():
            await layer.group_send(tenant_group(schema_name, "events"),
                                   {"type": "platform.events", "events": tenant_events})

    async_to_sync(send_all)()
