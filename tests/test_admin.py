"""Platform admins manage tenants on the public host; a tenant's admin manages its own data on its
own host and sees nothing of the platform's or another tenant's."""
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_tenants.utils import schema_context

pytestmark = pytest.mark.django_db



def signed_in(host: str, username: str, password: str) -> Client:
    client = Client(HTTP_HOST=host)
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    assert response.status_code == 302, f"login to {host} as {username} failed"
    return client


def test_platform_admin_sees_tenants_on_the_public_host(tenant_a):
    get_user_model().objects.create_superuser("root", password="platform-pass")
    page = signed_in("localhost", "root", "platform-pass").get("/admin/").content.decode()
    assert "Tenants" in page
    assert "Contact lists" not in page


def test_tenant_admin_sees_only_its_own_data_on_its_host(tenant_a, tenant_b):
    page = signed_in(tenant_a.domain, tenant_a.admin_user, tenant_a.admin_password).get("/admin/").content.decode()
    assert "Contact lists" in page and "API keys" in page
    assert "Tenants" not in page
    client = signed_in(tenant_a.domain, tenant_a.admin_user, tenant_a.admin_password)
    assert client.get("/admin/tenants/tenant/").status_code == 403


def test_a_tenant_admin_cannot_sign_in_elsewhere(tenant_a, tenant_b):
    with schema_context(tenant_a.tenant):
        assert get_user_model().objects.filter(username=tenant_a.admin_user).exists()
    for host in ("localhost", tenant_b.domain):
        response = Client(HTTP_HOST=host).post(
            "/admin/login/?next=/admin/", {"username": tenant_a.admin_user, "password": tenant_a.admin_password}
        )
        assert response.status_code == 200  # the login form again, with an error
