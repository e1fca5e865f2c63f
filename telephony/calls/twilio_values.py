"""Values as Twilio writes them, for its API resources and the requests we make to tenants."""
from django.utils.http import http_date

API_VERSION = "2010-04-01"


def rfc2822(value) -> str | None:
    """A timestamp as Twilio writes it: "Mon, 30 Nov 2026 15:42:35 +0000"."""
    return http_date(value.timestamp()).replace("GMT", "+0000") if value else None


def direction(value: str) -> str:
    """Calls placed through the API are Twilio's "outbound-api"."""
    return "outbound-api" if value == "outbound" else value
