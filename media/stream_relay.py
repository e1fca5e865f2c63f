"""The relay for agents that connect in: two WebSockets on daphne, paired through the channel layer.

    agent   ──ws /ws/v1/calls/{sid}/stream?token=…──▶ AgentLeg ─┐
                                                                  │ channel layer (either daphne)
    gateway ──ws /ws/internal/calls/{schema}/{sid}/relay?key=…──▶ GatewayLeg ─┘

The gateway holding the call runs its usual media stream against the relay (it only waits for
RELAY_READY before sending ``connected``/``start``), so both connect modes speak exactly the same
protocol and the relay passes text frames through untouched. Either leg may come first: each joins
its own group and greets the other's; the first greeting that arrives pairs them, and from then on
frames go channel to channel. When one side closes, the other is closed too.

Refusals (before the handshake completes, so the agent sees HTTP 403): a missing, bad, expired or
foreign token; a call that has ended or does not exist; a second agent for the same call.
"""
from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django_tenants.utils import schema_context

from core import keys
from core.channels_tenancy import tenant_group
from core.redis_client import get_redis
from media.stream_session import RELAY_READY
from telephony.calls import stream_access
from telephony.calls.models import Call

log = logging.getLogger(__name__)

CLOSE_PEER_GONE = 1000
CLOSE_NO_PEER = 4408  # the other side never came


def _query_param(scope, name: str) -> str:
    return (parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name) or [""])[0]


@database_sync_to_async
def _call_is_live(schema_name: str, call_sid: str) -> bool:
    with schema_context(schema_name):
        return Call.objects.filter(sid=call_sid).exclude(status__in=Call.FINAL_STATUSES).exists()


@database_sync_to_async
def _claim_agent_seat(call_sid: str) -> bool:
    """One agent per call: the first to connect takes the seat for the token's lifetime."""
    return bool(get_redis().set(keys.agent_stream_key(call_sid), 1, nx=True, ex=settings.AGENT_STREAM_TOKEN_TTL_S))


class _RelayLeg(AsyncWebsocketConsumer):
    role = ""
    peer_role = ""

    peer: str | None = None
    group: str | None = None
    waiter: asyncio.Task | None = None

    async def join(self, schema_name: str, call_sid: str, wait_s: float) -> None:
        self.call_sid = call_sid
        self.group = tenant_group(schema_name, f"stream.{call_sid}.{self.role}")
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.channel_layer.group_send(tenant_group(schema_name, f"stream.{call_sid}.{self.peer_role}"),
                                            {"type": "relay.hello", "channel": self.channel_name})
        self.waiter = asyncio.create_task(self._close_if_alone(wait_s))

    async def _close_if_alone(self, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        if self.peer is None:
            log.info("call %s: %s leg closed: no %s within %s s", self.call_sid, self.role, self.peer_role, wait_s)
            await self.close(code=CLOSE_NO_PEER, reason=f"no {self.peer_role} within {wait_s} s")

    async def relay_hello(self, event) -> None:
        if self.peer is not None:
            return
        self.peer = event["channel"]
        await self.channel_layer.send(self.peer, {"type": "relay.hello", "channel": self.channel_name})
        await self.paired()

    async def paired(self) -> None:
        pass

    async def receive(self, text_data=None, bytes_data=None):
        if self.peer is None:
            return  # nobody to hear it yet (the gateway speaks first, once paired)
        await self.channel_layer.send(self.peer, {"type": "relay.frame", "text": text_data, "bytes": bytes_data})

    async def relay_frame(self, event) -> None:
        await self.send(text_data=event["text"], bytes_data=event["bytes"])

    async def relay_closed(self, event) -> None:
        self.peer = None
        await self.close(code=CLOSE_PEER_GONE, reason=f"{self.peer_role} closed ({event['code']})")

    async def disconnect(self, code):
        if self.waiter is not None:
            self.waiter.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.peer is not None:
            await self.channel_layer.send(self.peer, {"type": "relay.closed", "code": code})


class AgentLeg(_RelayLeg):
    """The tenant's agent, connecting in with the call's token."""

    role, peer_role = "agent", "gateway"

    async def connect(self):
        call_sid = self.scope["url_route"]["kwargs"]["call_sid"]
        try:
            schema_name = stream_access.check_agent_token(_query_param(self.scope, "token"), call_sid)
        except stream_access.StreamAccessDenied as denied:
            log.info("call %s: agent refused: %s", call_sid, denied)
            await self.close()
            return
        if not await _call_is_live(schema_name, call_sid):
            log.info("call %s: agent refused: the call is over or unknown", call_sid)
            await self.close()
            return
        if not await _claim_agent_seat(call_sid):
            log.info("call %s: agent refused: another agent holds the stream", call_sid)
            await self.close()
            return
        # Waits through ringing too: the agent may connect as soon as the call is placed.
        await self.join(schema_name, call_sid, wait_s=settings.AGENT_STREAM_TOKEN_TTL_S)


class GatewayLeg(_RelayLeg):
    """The gateway holding the call; told RELAY_READY once the agent is there."""

    role, peer_role = "gateway", "agent"

    async def connect(self):
        kwargs = self.scope["url_route"]["kwargs"]
        schema_name, call_sid = kwargs["schema_name"], kwargs["call_sid"]
        try:
            stream_access.check_relay_key(_query_param(self.scope, "key"), schema_name, call_sid)
        except stream_access.StreamAccessDenied:
            log.warning("call %s: gateway relay refused: bad key", call_sid)
            await self.close()
            return
        # The gateway times the agent's arrival itself (AGENT_STREAM_CONNECT_TIMEOUT_S); this is a backstop.
        await self.join(schema_name, call_sid, wait_s=settings.AGENT_STREAM_CONNECT_TIMEOUT_S + 5)

    async def paired(self) -> None:
        await self.send(text_data=RELAY_READY)
