"""Live dashboard sockets. Each connection polls a Redis change counter (m:ver:*) every POLL_S and
pushes a fresh snapshot when it moved (at most every MIN_PUSH_S), and at least every HEARTBEAT_S so
"now" figures (CPS, calls in flight) keep moving: a change reaches the browser within ~0.35 s.

    ws://<tenant host>/ws/dashboard            signed-in users of that tenant: that tenant only
    ws://<platform host>/ws/platform-dashboard staff of the platform

Client messages: {"type": "window", "window": "1h"} picks the series window (selectors.WINDOWS);
{"type": "ping", "id": …} is answered with a pong.
"""
from __future__ import annotations

import asyncio
import logging
import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db import connection
from django_tenants.utils import get_public_schema_name

from . import selectors

log = logging.getLogger(__name__)

CLOSE_NOT_SIGNED_IN = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_WRONG_HOST = 4404


class _LiveDashboard(AsyncJsonWebsocketConsumer):
    # Dashboards poll Redis and receive nothing over the channel layer: no layer, so no blocking
    # BZPOPMIN connection per socket (and no exposure to the layer's receive timeouts).
    channel_layer_alias = None
    POLL_S = 0.1
    MIN_PUSH_S = 0.25
    HEARTBEAT_S = 1.0
    kind = ""

    async def connect(self):
        refusal = self.refusal()
        if refusal:
            await self.close(code=refusal)
            return
        self.window = selectors.DEFAULT_WINDOW
        self.push_now = asyncio.Event()
        await self.accept()
        self.ticker = asyncio.create_task(self.push_forever())

    def refusal(self) -> int | None:
        raise NotImplementedError

    def version(self) -> int:
        raise NotImplementedError

    def snapshot(self) -> dict:
        raise NotImplementedError

    async def disconnect(self, code):
        ticker = getattr(self, "ticker", None)
        if ticker:
            ticker.cancel()

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong", "id": content.get("id")})
        elif content.get("type") == "window" and content.get("window") in selectors.WINDOWS:
            self.window = content["window"]
            self.push_now.set()

    async def push_forever(self):
        last_version, last_push = None, 0.0
        read_version = sync_to_async(self.version, thread_sensitive=False)
        while True:
            try:
                version = await read_version()
                elapsed = time.monotonic() - last_push
                if (self.push_now.is_set() or elapsed >= self.HEARTBEAT_S
                        or (version != last_version and elapsed >= self.MIN_PUSH_S)):
                    self.push_now.clear()
                    data = await self.read_snapshot()
                    await self.send_json({"type": f"{self.kind}.metrics", "version": version, "data": data})
                    last_version, last_push = version, time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away for a moment: keep the socket, try again
                log.exception("%s dashboard update failed", self.kind)
                await asyncio.sleep(1)
            try:
                await asyncio.wait_for(self.push_now.wait(), self.POLL_S)
            except TimeoutError:
                pass

    async def read_snapshot(self) -> dict:
        return await sync_to_async(self.snapshot, thread_sensitive=False)()


class TenantDashboardConsumer(_LiveDashboard):
    kind = "tenant"

    def refusal(self):
        if self.scope["schema_name"] == get_public_schema_name():
            return CLOSE_WRONG_HOST  # a tenant's dashboard lives on the tenant's host
        if not self.scope["user"].is_authenticated:
            return CLOSE_NOT_SIGNED_IN
        return None

    def version(self):
        return selectors.tenant_version(self.scope["schema_name"])

    def snapshot(self):
        return selectors.tenant_dashboard(self.scope["schema_name"], self.window)

    async def read_snapshot(self):
        return await database_sync_to_async(self.snapshot)()  # percentiles come from the call records


class PlatformDashboardConsumer(_LiveDashboard):
    kind = "platform"

    def refusal(self):
        if self.scope["schema_name"] != get_public_schema_name():
            return CLOSE_WRONG_HOST
        user = self.scope["user"]
        if not user.is_authenticated:
            return CLOSE_NOT_SIGNED_IN
        if not user.is_staff:
            return CLOSE_FORBIDDEN
        return None

    def version(self):
        return selectors.platform_version()

    def snapshot(self):
        connection.set_schema_to_public()  # carriers live in the public schema
        return selectors.platform_dashboard(self.window)

    async def read_snapshot(self):
        return await database_sync_to_async(self.snapshot)()
