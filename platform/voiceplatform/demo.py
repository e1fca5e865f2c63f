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


def banner(base_url: str, port: int, saved: dict) -> str:
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
            "  demo tenant credentials as JSON:",
            "  " + json.dumps(tenant),
            "Ctrl-C stops everything.",
            "",
        ]
    )
