"""A tenant created from the platform admin page, committed (its schema is real DDL) and dropped again."""
import pytest
from django.contrib.auth import get_user_model

from tenants.models import Tenant
from tests.ui_support import make_user, signed_in

pytestmark = pytest.mark.usefixtures("committed")


def test_creating_a_tenant_shows_its_credentials_once():
    from tenants.services import drop_tenant

    make_user("public", "root2", staff=True)
    client = signed_in("localhost", "root2")
    try:
        response = client.post("/platform/tenants/", {"slug": "uinew", "domain": "uinew.localhost", "name": "UI New"})
        assert response.status_code == 302
        html = client.get(response["Location"]).content.decode()
        assert 'id="tenant-credentials"' in html and "cred-password" in html
        assert 'id="tenant-credentials"' not in client.get(response["Location"]).content.decode()
        assert "UI New" in client.get("/platform/tenants/").content.decode()
    finally:
        if Tenant.objects.filter(schema_name="uinew").exists():
            drop_tenant("uinew")
        get_user_model().objects.filter(username="root2").delete()
