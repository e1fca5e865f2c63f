"""Who sees which page of the browser UI: platform admins on the public host, a tenant's admins and
members on the tenant's host, nobody on another tenant's host, nobody signed out."""
import pytest

from tests.ui_support import make_user, signed_in

pytestmark = pytest.mark.django_db

TENANT_MEMBER_PAGES = ["/campaigns/", "/campaigns/new/", "/calls/"]
TENANT_ADMIN_PAGES = ["/settings/api-keys/", "/settings/webhooks/", "/settings/do-not-call/", "/settings/users/"]
PLATFORM_PAGES = ["/platform/carriers/", "/platform/carriers/new/", "/platform/numbers/", "/platform/numbers/new/",
                  "/platform/tenants/", "/platform/gateways/", "/platform/calls/"]



@pytest.fixture
def acme_member(tenant_a):
    make_user(tenant_a.tenant, "mia")
    return signed_in(tenant_a.domain, "mia")


@pytest.fixture
def acme_admin(tenant_a):
    return signed_in(tenant_a.domain, tenant_a.admin_user, tenant_a.admin_password)


@pytest.fixture
def platform_admin():
    make_user("public", "root", staff=True, superuser=True)
    return signed_in("localhost", "root")


def test_the_sign_in_page_renders_on_every_host(tenant_a):
    for host in ("localhost", tenant_a.domain):
        from django.test import Client

        page = Client(HTTP_HOST=host).get("/accounts/login/")
        assert page.status_code == 200
        html = page.content.decode()
        assert '<label for="id_username">' in html and 'type="password"' in html


def test_signed_out_visitors_are_sent_to_sign_in(tenant_a):
    from django.test import Client

    client = Client(HTTP_HOST=tenant_a.domain)
    for path in TENANT_MEMBER_PAGES + TENANT_ADMIN_PAGES:
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next="), path
    public = Client(HTTP_HOST="localhost")
    for path in PLATFORM_PAGES:
        response = public.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), path


def test_a_wrong_password_shows_the_form_again_with_what_was_typed(tenant_a):
    from django.test import Client

    response = Client(HTTP_HOST=tenant_a.domain).post("/accounts/login/", {"username": "admin", "password": "nope"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Please enter a correct username and password" in html
    assert 'value="admin"' in html


def test_sign_in_lands_on_the_role_home_and_sign_out_ends_the_session(tenant_a):
    from django.test import Client

    client = Client(HTTP_HOST=tenant_a.domain)
    response = client.post("/accounts/login/", {"username": tenant_a.admin_user, "password": tenant_a.admin_password})
    assert response["Location"] == "/campaigns/"
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/campaigns/").status_code == 302


def test_a_member_uses_campaigns_but_not_settings(acme_member):
    for path in TENANT_MEMBER_PAGES:
        assert acme_member.get(path).status_code == 200, path
    for path in TENANT_ADMIN_PAGES:
        response = acme_member.get(path)
        assert response.status_code == 403, path
        assert "Only an administrator" in response.content.decode()
    html = acme_member.get("/campaigns/").content.decode()
    assert "/settings/api-keys/" not in html  # not even linked


def test_a_tenant_admin_uses_campaigns_and_settings(acme_admin):
    for path in TENANT_MEMBER_PAGES + TENANT_ADMIN_PAGES:
        assert acme_admin.get(path).status_code == 200, path


def test_tenant_users_never_reach_platform_pages(acme_admin):
    for path in PLATFORM_PAGES:
        assert acme_admin.get(path).status_code == 404, path  # platform pages do not exist on a tenant host


def test_a_platform_admin_uses_platform_pages_and_tenant_pages_are_not_on_the_public_host(platform_admin):
    for path in PLATFORM_PAGES:
        assert platform_admin.get(path).status_code == 200, path
    for path in TENANT_MEMBER_PAGES + TENANT_ADMIN_PAGES:
        assert platform_admin.get(path).status_code == 404, path


def test_a_public_user_who_is_not_staff_is_refused(tenant_a):
    make_user("public", "visitor")
    client = signed_in("localhost", "visitor")
    assert client.get("/platform/carriers/").status_code == 403


def test_a_session_of_one_tenant_means_nothing_on_another(tenant_a, tenant_b, acme_admin):
    cookie = acme_admin.cookies["sessionid"].value
    from django.test import Client

    other = Client(HTTP_HOST=tenant_b.domain)
    other.cookies["sessionid"] = cookie
    assert other.get("/campaigns/").status_code == 302  # a stranger there: sign in
    response = other.post("/accounts/login/", {"username": tenant_a.admin_user, "password": tenant_a.admin_password})
    assert response.status_code == 200  # acme's password is not globex's


def test_a_suspended_tenant_cannot_sign_in_nor_use_pages(tenant_a, acme_member):
    from django.test import Client

    from tenants.models import Tenant

    Tenant.objects.filter(schema_name=tenant_a.tenant).update(is_suspended=True)
    try:
        assert acme_member.get("/campaigns/").status_code == 403
        response = Client(HTTP_HOST=tenant_a.domain).post(
            "/accounts/login/", {"username": tenant_a.admin_user, "password": tenant_a.admin_password})
        assert response.status_code == 200 and "suspended" in response.content.decode()
    finally:
        Tenant.objects.filter(schema_name=tenant_a.tenant).update(is_suspended=False)


def test_the_banner_links_render_styled():
    """/admin/ and /api/docs load every stylesheet and script they name (WhiteNoise, the sidecar's
    Swagger and Redoc files), as does every UI page."""
    import re

    from django.test import Client

    client = Client(HTTP_HOST="localhost")
    for page in ("/admin/login/", "/api/docs", "/api/redoc", "/accounts/login/"):
        html = client.get(page).content.decode()
        assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
        assert assets, f"{page} names no static files"
        for asset in assets:
            response = client.get(asset)
            assert response.status_code == 200, f"{page}: {asset} is a {response.status_code}"
            assert "max-age" in response["Cache-Control"]
    assert client.get("/static/ui/ui.css")["Content-Type"].startswith("text/css")
    assert client.get("/static/voiceplatform/settings.py").status_code == 404
