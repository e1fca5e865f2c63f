"""What `make run` sets up so the platform works with nothing configured: a platform admin, a demo
tenant, and their credentials (kept under var/ so each start can print them again)."""
from __future__ import annotations

import json
import secrets

from django.contrib.auth import get_user_model
from django.db import connection

from tenants.models import Tenant
from tenants.services import create_tenant, ensure_public_tenant, reset_admin_credentials

from .embedded import var_dir

DEMO_SLUG = "demo"
DEMO_DOMAIN = "demo.localhost"


def credentials_file():
    return var_dir() / "demo-credentials.json"


def ensure_platform_admin() -> dict:
    connection.set_schema_to_public()
    user_model = get_user_model()
    password = secrets.token_urlsafe(12)
    user = user_model.objects.filter(username="admin").first()
    if user is None:
        user_model.objects.create_superuser("admin", email="", password=password)
    else:
        user.set_password(password)
        user.save(update_fields=["password"])
    return {"user": "admin", "password": password}


def ensure_demo_setup() -> dict:
    """Idempotent; returns {"platform_admin": …, "demo_tenant": …} and saves it under var/."""
    ensure_public_tenant()
    saved = json.loads(credentials_file().read_text()) if credentials_file().exists() else {}
    if Tenant.objects.filter(schema_name=DEMO_SLUG).exists() and saved.get("demo_tenant"):
        return saved
    if Tenant.objects.filter(schema_name=DEMO_SLUG).exists():
        tenant_credentials = reset_admin_credentials(DEMO_SLUG)
    else:
        tenant_credentials = create_tenant(DEMO_SLUG, DEMO_DOMAIN, name="Demo company")
    saved = {"platform_admin": ensure_platform_admin(), "demo_tenant": tenant_credentials.as_dict()}
    credentials_file().parent.mkdir(parents=True, exist_ok=True)
    credentials_file().write_text(json.dumps(saved, indent=2))
    credentials_file().chmod(0o600)
    return saved


DEMO_CARRIER = "Demo carrier"
DEMO_NUMBER = "+14155550100"


def ensure_demo_telephony(carrier_port: int, agent_port: int) -> None:
    """The built-in far end as a carrier, a number for the demo tenant answered by the demo agent,
    and the gateways' copy of that inventory in Redis."""
    from telephony.models import Carrier, Number
    from telephony.services import publish_inventory

    connection.set_schema_to_public()
    Carrier.objects.update_or_create(
        name=DEMO_CARRIER, defaults={"host": "127.0.0.1", "port": carrier_port, "transport": "udp",
                                     "enabled": True, "max_cps": 50, "max_concurrent": 200},
    )
    Number.objects.update_or_create(
        e164=DEMO_NUMBER, defaults={"tenant": Tenant.objects.get(schema_name=DEMO_SLUG),
                                    "inbound_stream_url": f"ws://127.0.0.1:{agent_port}"},
    )
    publish_inventory()


def banner(base_url: str, port: int, saved: dict, agent_port: int) -> str:
    admin = saved["platform_admin"]
    tenant = saved["demo_tenant"]
    return "\n".join(
        [
            "",
            "Voice platform is up.",
            f"  health         {base_url}/healthz",
            f"  platform admin {base_url}/admin/   user {admin['user']}  password {admin['password']}",
            f"  demo tenant    http://{tenant['domain']}:{port}/admin/   user {tenant['admin_user']}  "
            f"password {tenant['admin_password']}",
            f"  REST API       {base_url}/api/docs   Authorization: Bearer {tenant['api_key']}",
            f"  try a call     curl -s -H 'Authorization: Bearer {tenant['api_key']}' -H 'Content-Type: application/json' "
            f"-d '{{\"to\": \"+14155550199\", \"from\": \"{DEMO_NUMBER}\", \"stream_url\": \"ws://127.0.0.1:{agent_port}\"}}' "
            f"{base_url}/api/v1/calls",
            "  demo tenant credentials as JSON:",
            "  " + json.dumps(tenant),
            "Ctrl-C stops everything.",
            "",
        ]
    )
