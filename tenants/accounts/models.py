"""What lets a tenant's code in: API keys, stored hashed. Tenant schema."""
import uuid

from django.db import models


def new_key_sid() -> str:
    # Twilio's API key SID shape (SK + 32 hex): Twilio clients authenticate with it and the secret.
    return "SK" + uuid.uuid4().hex


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    sid = models.CharField(max_length=34, unique=True, default=new_key_sid)
    # The first characters of the secret, shown in lists so a person can tell keys apart.
    prefix = models.CharField(max_length=12)
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # A read-only key (for dashboards, reports, exports): any request that would change something is a 403.
    read_only = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
