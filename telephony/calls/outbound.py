"""The outbound guard (core.egress) with this deployment's allow-list (settings.OUTBOUND_ALLOW): every
URL a tenant gives us (stream_url, status callbacks, TwiML Url) is checked here before it is kept,
and again when it is used."""
from __future__ import annotations

from django.conf import settings

from core import egress

STREAM_SCHEMES = egress.WS_SCHEMES
CALLBACK_SCHEMES = egress.HTTP_SCHEMES


def refusal(url: str, schemes: tuple[str, ...]) -> str:
    """Why ``url`` may not be used (the rule), or "" when it may (or is empty). A name that does not
    resolve yet passes: it is checked again when it is used."""
    if not url:
        return ""
    try:
        egress.check(url, settings.OUTBOUND_ALLOW, schemes)
    except egress.EgressUnresolved:
        return ""
    except egress.EgressRefused as exc:
        return str(exc)
    return ""


def request(url: str, **kwargs) -> egress.Response:
    return egress.request(url, allow=settings.OUTBOUND_ALLOW, **kwargs)
