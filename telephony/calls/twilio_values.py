"""Values as Twilio writes them, for its API resources and the requests we make to tenants."""
import base64
import hashlib
import hmac

from django.utils.http import http_date

API_VERSION = "2010-04-01"


def rfc2822(value) -> str | None:
    """A timestamp as Twilio writes it: "Mon, 30 Nov 2026 15:42:35 +0000"."""
    return http_date(value.timestamp()).replace("GMT", "+0000") if value else None


def direction(value: str) -> str:
    """Calls placed through the API are Twilio's "outbound-api"."""
    return "outbound-api" if value == "outbound" else value


def signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by each POST parameter's name and value,
    sorted by name (none for GET: the query is in the URL). Twilio's RequestValidator checks it."""
    signed = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()).decode()
