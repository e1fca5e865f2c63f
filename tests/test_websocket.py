"""A tenant's dashboard socket: signed-in users of that tenant get its live events, through the real
ASGI application and the Redis channel layer; nobody else does."""
import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from voiceplatform.asgi import application
from voiceplatform.events import publish_tenant_event

from tests.sessions import signed_in_session

pytestmark = pytest.mark.usefixtures("committed")



def socket(host: str, session_key: str = "") -> WebsocketCommunicator:
    headers = [(b"host", host.encode()), (b"origin", f"http://{host}".encode())]  # as a browser sends
    if session_key:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()))
    return WebsocketCommunicator(application, "/ws/events", headers=headers)


def test_events_reach_the_tenants_own_dashboards_only(tenant_a, tenant_b):
    acme_session = signed_in_session(tenant_a.tenant, "ada")
    globex_session = signed_in_session(tenant_b.tenant, "grace")

    async def scenario():
        acme = socket(tenant_a.domain, acme_session)
        globex = socket(tenant_b.domain, globex_session)
        assert (await acme.connect())[0]
        assert (await globex.connect())[0]
        assert await acme.receive_json_from(timeout=5) == {"type": "hello", "tenant": "acme"}
        assert await globex.receive_json_from(timeout=5) == {"type": "hello", "tenant": "globex"}

        await acme.send_json_to({"type": "ping", "id": 7})
        assert await acme.receive_json_from(timeout=5) == {"type": "pong", "id": 7}

        await sync_to_async(publish_tenant_event)("acme", {"type": "call.completed", "call": "CA1"})
        assert await acme.receive_json_from(timeout=5) == {"type": "call.completed", "call": "CA1"}
        assert await globex.receive_nothing(timeout=0.5)
        await acme.disconnect()
        await globex.disconnect()

    asyncio.run(scenario())


def test_a_session_of_one_tenant_does_not_open_another_tenants_stream(tenant_a, tenant_b):
    acme_session = signed_in_session(tenant_a.tenant, "ada")

    async def scenario():
        intruder = socket(tenant_b.domain, acme_session)
        connected, code = await intruder.connect()
        assert not connected and code == 4401
        anonymous = socket(tenant_a.domain)
        connected, code = await anonymous.connect()
        assert not connected and code == 4401

    asyncio.run(scenario())
