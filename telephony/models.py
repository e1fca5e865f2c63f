"""Platform-wide telephony inventory: carriers (SIP trunks) and phone numbers. Public schema."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from . import secrets, validators
from .routing import CarrierRoute


def _validated(check, field: str, value):
    try:
        return check(value)
    except ValueError as exc:
        raise ValidationError({field: str(exc)}) from None


class Carrier(models.Model):
    class Transport(models.TextChoices):
        UDP = "udp", "UDP"
        TCP = "tcp", "TCP"
        TLS = "tls", "TLS"

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255, help_text="host name or IP address of the trunk")
    port = models.PositiveIntegerField(default=5060)
    transport = models.CharField(max_length=3, choices=Transport.choices, default=Transport.UDP)
    username = models.CharField(max_length=100, blank=True, help_text="digest user, if the trunk asks for one")
    # Encrypted at rest (FIELD_ENCRYPTION_KEY); never shown back. Use set_password().
    password_encrypted = models.TextField(blank=True, editable=False)
    from_domain = models.CharField(max_length=255, blank=True)
    strip_digits = models.PositiveSmallIntegerField(default=0, help_text="leading digits removed from E.164")
    add_prefix = models.CharField(max_length=10, default="+", blank=True, help_text="prepended after stripping")
    priority = models.PositiveIntegerField(default=100, help_text="lower is tried first")
    weight = models.PositiveIntegerField(default=1, help_text="share of calls among carriers of equal priority")
    region = models.CharField(max_length=32, blank=True, help_text="empty: any region")
    max_cps = models.PositiveIntegerField(default=10, help_text="calls per second, whole cluster")
    max_concurrent = models.PositiveIntegerField(default=100, help_text="concurrent calls, whole cluster")
    enabled = models.BooleanField(default=True)
    allows_refer = models.BooleanField(
        default=False, help_text="the trunk accepts SIP REFER: blind transfers of its calls go to the carrier")
    # Health from SIP OPTIONS pings (telephony.sip_options, telephony.services.record_health); a carrier that is down gets no new calls.
    healthy = models.BooleanField(default=True)
    health_failures = models.PositiveIntegerField(default=0)
    health_successes = models.PositiveIntegerField(default=0)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    health_rtt_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        for field, check in (("host", validators.validate_host), ("port", validators.validate_port)):
            try:
                setattr(self, field, check(getattr(self, field)))
            except ValueError as exc:
                errors[field] = str(exc)
        if errors:
            raise ValidationError(errors)

    def set_password(self, plaintext: str) -> None:
        self.password_encrypted = secrets.encrypt(plaintext, settings.FIELD_ENCRYPTION_KEY) if plaintext else ""

    def password(self) -> str:
        if not self.password_encrypted:
            return ""
        return secrets.decrypt(self.password_encrypted, settings.FIELD_ENCRYPTION_KEY)

    def as_route(self) -> CarrierRoute:
        return CarrierRoute(
            id=self.pk, host=self.host, port=self.port, transport=self.transport, priority=self.priority,
            weight=self.weight, region=self.region or None, enabled=self.enabled, healthy=self.healthy,
            strip_digits=self.strip_digits, add_prefix=self.add_prefix, from_domain=self.from_domain,
            username=self.username, password=self.password(),
        )


class CarrierHealthEvent(models.Model):
    """A carrier going down or coming back, with why."""

    carrier = models.ForeignKey(Carrier, related_name="health_events", on_delete=models.CASCADE)
    healthy = models.BooleanField()
    reason = models.CharField(max_length=255)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at"]


class Number(models.Model):
    """An E.164 number in the platform's inventory, owned by at most one tenant."""

    e164 = models.CharField("number", max_length=16, unique=True)
    tenant = models.ForeignKey(
        "tenants.Tenant", related_name="numbers", null=True, blank=True, on_delete=models.SET_NULL
    )
    region = models.CharField(max_length=32, blank=True)
    # Inbound routing: the AI endpoint that answers calls to this number.
    inbound_stream_url = models.CharField(max_length=500, blank=True)
    inbound_parameters = models.JSONField(default=dict, blank=True)
    # ... or, as Twilio's IncomingPhoneNumbers, the tenant's app whose TwiML answers them (fetched per call)
    voice_url = models.URLField("voice URL", max_length=500, blank=True)
    voice_method = models.CharField(max_length=4, default="POST", choices=[("POST", "POST"), ("GET", "GET")])
    voice_fallback_url = models.URLField("voice fallback URL", max_length=500, blank=True)
    voice_fallback_method = models.CharField(max_length=4, default="POST", choices=[("POST", "POST"), ("GET", "GET")])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["e164"]

    def __str__(self) -> str:
        return self.e164

    def clean(self) -> None:
        self.e164 = _validated(validators.validate_e164, "e164", self.e164)
        if self.inbound_stream_url and not self.inbound_stream_url.startswith(("ws://", "wss://")):
            raise ValidationError({"inbound_stream_url": "must be a ws:// or wss:// URL"})
