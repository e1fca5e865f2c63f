"""Who may join a call's media stream when the agent connects in, and at which URLs.

The agent gets ``stream_connect_url`` (in the call resource and in its status callbacks): our
WebSocket with a per-call token, signed and time-stamped, good for AGENT_STREAM_TOKEN_TTL_S seconds.
The gateway holding the call reaches the same relay on ``relay_url``, authenticated by a key only
the platform can compute. Neither needs a database row.
"""
from __future__ import annotations

import hmac
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core import signing
from django.utils.crypto import salted_hmac

TOKEN_SALT = "calls.agent-stream"
RELAY_KEY_SALT = "calls.gateway-relay"


class StreamAccessDenied(Exception):
    """A token or key that does not open this call's stream; the message says why."""


def agent_token(schema_name: str, call_sid: str) -> str:
    return signing.TimestampSigner(salt=TOKEN_SALT).sign_object({"schema": schema_name, "call": call_sid})


def check_agent_token(token: str, call_sid: str) -> str:
    """The tenant schema the token was issued for, if it is genuine, fresh and for this call."""
    try:
        claims = signing.TimestampSigner(salt=TOKEN_SALT).unsign_object(
            token, max_age=settings.AGENT_STREAM_TOKEN_TTL_S
        )
    except signing.SignatureExpired:
        raise StreamAccessDenied("token expired") from None
    except signing.BadSignature:
        raise StreamAccessDenied("bad token") from None
    if claims.get("call") != call_sid:
        raise StreamAccessDenied("token is for another call")
    return claims["schema"]


def relay_key(schema_name: str, call_sid: str) -> str:
    return salted_hmac(RELAY_KEY_SALT, f"{schema_name}/{call_sid}", algorithm="sha256").hexdigest()


def check_relay_key(key: str, schema_name: str, call_sid: str) -> None:
    if not hmac.compare_digest(key or "", relay_key(schema_name, call_sid)):
        raise StreamAccessDenied("bad relay key")


def agent_stream_path(call_sid: str) -> str:
    return f"/ws/v1/calls/{call_sid}/stream"


def agent_connect_url(base_url: str, schema_name: str, call_sid: str) -> str:
    """``base_url`` (http(s):// or ws(s)://, the address agents reach us at) → the call's stream URL."""
    scheme, netloc, _, _, _ = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    query = urlencode({"token": agent_token(schema_name, call_sid)})
    return urlunsplit((scheme, netloc, agent_stream_path(call_sid), query, ""))


def relay_url(schema_name: str, call_sid: str) -> str:
    """Where the gateway holding the call joins the relay (MEDIA_RELAY_URL: daphne, as the gateway sees it)."""
    base = settings.MEDIA_RELAY_URL.rstrip("/")
    query = urlencode({"key": relay_key(schema_name, call_sid)})
    return f"{base}/ws/internal/calls/{schema_name}/{call_sid}/relay?{query}"
