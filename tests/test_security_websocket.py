"""A page on another site cannot open a signed-in user's dashboard socket: browser sockets accept only
an Origin the platform serves (the browser sends the user's cookies along whatever page opens it)."""
import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings

from tests.sessions import signed_in_session
from voiceplatform.asgi import application

pytestmark = pytest.mark.usefixtures("committed")


def socket(path: str, host: str, origin: str, session_key: str) -> WebsocketCommunicator:
    headers = [(b"host", host.encode()), (b"origin", origin.encode()),
               (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode())]
    return WebsocketCommunicator(application, path, headers=headers)


@pytest.mark.parametrize("path", ["/ws/events", "/ws/dashboard"])
def test_browser_sockets_refuse_a_foreign_origin_and_accept_the_tenants_own(tenant_a, path):
    session = signed_in_session(tenant_a.tenant, "ada")

    async def scenario():
        foreign = socket(path, tenant_a.domain, "https://evil.example", session)
        connected, _ = await foreign.connect()
        assert not connected
        own = socket(path, tenant_a.domain, f"http://{tenant_a.domain}", session)
        connected, _ = await own.connect()
        assert connected
        await own.disconnect()

    asyncio.run(scenario())
