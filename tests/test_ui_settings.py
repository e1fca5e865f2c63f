"""Tenant settings pages: API keys shown once and revocable, the account auth token (rotatable) and delivery log,
the do-not-call list (add, upload, remove) and users (create, roles), each validating its input."""
import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context

from campaigns.models import DoNotCall
from tenants.accounts.models import ApiKey
from tests.ui_support import make_user, signed_in

pytestmark = pytest.mark.django_db



@pytest.fixture
def admin(tenant_a):
    return signed_in(tenant_a.domain, tenant_a.admin_user, tenant_a.admin_password)


def test_an_api_key_is_shown_once_and_can_be_revoked(admin, tenant_a):
    assert "This field is required" in admin.post("/settings/api-keys/", {"name": ""}).content.decode()
    response = admin.post("/settings/api-keys/", {"name": "CRM"}, follow=True)
    html = response.content.decode()
    assert 'id="new-api-key"' in html and tenant_a.account_sid + "." in html
    assert 'id="new-api-key"' not in admin.get("/settings/api-keys/").content.decode()
    with schema_context(tenant_a.tenant):
        key = ApiKey.objects.get(name="CRM")
    admin.post(f"/settings/api-keys/{key.pk}/revoke/")
    with schema_context(tenant_a.tenant):
        key.refresh_from_db()
    assert key.revoked_at is not None


def test_webhooks_page_shows_the_auth_token_and_filters_the_log(admin, tenant_a):
    from tenants import auth_token
    from tenants.models import Tenant

    html = admin.get("/settings/webhooks/").content.decode()
    assert auth_token.current(Tenant.objects.get(schema_name=tenant_a.tenant)) in html
    assert admin.get("/settings/webhooks/?status=failed").status_code == 200


def test_an_admin_sets_the_tenants_status_callback_url_and_a_private_address_is_refused(admin, tenant_a):
    from tenants.models import Tenant

    refused = admin.post("/settings/webhooks/", {"status_callback": "http://10.1.2.3/hooks"})
    assert refused.status_code == 200 and "errors" in refused.content.decode()
    assert Tenant.objects.get(schema_name=tenant_a.tenant).status_callback == ""
    saved = admin.post("/settings/webhooks/", {"status_callback": "http://127.0.0.1:9/acme-calls"}, follow=True)
    assert "now report to http://127.0.0.1:9/acme-calls" in saved.content.decode()
    assert Tenant.objects.get(schema_name=tenant_a.tenant).status_callback == "http://127.0.0.1:9/acme-calls"
    assert 'value="http://127.0.0.1:9/acme-calls"' in admin.get("/settings/webhooks/").content.decode()
    admin.post("/settings/webhooks/", {"status_callback": ""})
    assert Tenant.objects.get(schema_name=tenant_a.tenant).status_callback == ""


def test_an_admin_rotates_the_auth_token_and_the_old_one_is_shown_as_in_grace(admin, tenant_a):
    from tenants import auth_token
    from tenants.models import Tenant

    acme = Tenant.objects.get(schema_name=tenant_a.tenant)
    old = auth_token.current(acme)
    assert admin.post("/settings/auth-token/rotate/").status_code == 302
    acme.refresh_from_db()
    new = auth_token.current(acme)
    html = admin.get("/settings/webhooks/").content.decode()
    assert new != old and new in html and old not in html and "previous token still logs in" in html
    assert auth_token.accepts(acme, old) and auth_token.accepts(acme, new)


def test_do_not_call_add_validates_and_keeps_input(admin, tenant_a):
    response = admin.post("/settings/do-not-call/", {"form": "add", "phone": "12345", "reason": "asked"})
    html = response.content.decode()
    assert response.status_code == 200 and "must start with" in html and 'value="asked"' in html
    admin.post("/settings/do-not-call/", {"form": "add", "phone": "+1 415 555 0177", "reason": "asked"})
    with schema_context(tenant_a.tenant):
        entry = DoNotCall.objects.get(phone="+14155550177")
    admin.post(f"/settings/do-not-call/{entry.pk}/remove/")
    with schema_context(tenant_a.tenant):
        assert not DoNotCall.objects.filter(phone="+14155550177").exists()


def test_do_not_call_upload_reports_bad_lines_and_refuses_other_formats(admin, tenant_a):
    content = b"phone,reason\n+14155550181,complaint\nnope,x\n+14155550182,\n"
    response = admin.post("/settings/do-not-call/", {"form": "upload", "file": SimpleUploadedFile("dnc.csv", content)})
    html = response.content.decode()
    assert "<strong>2</strong> numbers added" in html and "nope" in html
    with schema_context(tenant_a.tenant):
        assert DoNotCall.objects.filter(phone__in=["+14155550181", "+14155550182"]).count() == 2
    refused = admin.post("/settings/do-not-call/", {"form": "upload", "file": SimpleUploadedFile("dnc.xlsx", b"PK\x03\x04")})
    assert "Save it as CSV UTF-8" in refused.content.decode()


def test_users_are_created_as_members_or_admins_and_roles_change(admin, tenant_a):
    bad = admin.post("/settings/users/", {"username": "bob", "password": "short", "email": "x"})
    html = bad.content.decode()
    assert "too short" in html and "valid email" in html and 'value="bob"' in html
    assert 'value="short"' not in html  # passwords are never sent back
    admin.post("/settings/users/", {"username": "bob", "password": "a-long-password", "email": "bob@example.com"})
    with schema_context(tenant_a.tenant):
        bob = get_user_model().objects.get(username="bob")
        assert not bob.is_staff
    bob_client = signed_in(tenant_a.domain, "bob", "a-long-password")
    assert bob_client.get("/settings/users/").status_code == 403
    admin.post(f"/settings/users/{bob.pk}/role/", {"role": "admin"})
    assert bob_client.get("/settings/users/").status_code == 200
    taken = admin.post("/settings/users/", {"username": "BOB", "password": "a-long-password"})
    assert "This user name is taken" in taken.content.decode()


def test_an_admin_cannot_change_their_own_role(tenant_a):
    me = make_user(tenant_a.tenant, "carol", staff=True)
    client = signed_in(tenant_a.domain, "carol")
    response = client.post(f"/settings/users/{me.pk}/role/", {"role": "member"}, follow=True)
    assert "cannot change your own role" in response.content.decode()


def test_a_do_not_call_file_without_a_header_is_read_from_its_first_column(tenant_a):
    """campaigns.dnc, which the upload form uses: numbers already listed are counted apart, bad lines
    are reported with their line number, and the good ones are kept."""
    from campaigns.dnc import do_not_call_import

    with schema_context(tenant_a.tenant):
        DoNotCall.objects.create(phone="+14155550191")
        report = do_not_call_import(b"+14155550191\n\n+14155550192,moved\nnot a phone\n+1 415 555 0193\n")
        assert (report.added, report.already, report.error_count) == (2, 1, 1)
        assert [(e["line"], e["value"]) for e in report.errors] == [(4, "not a phone")]
        assert DoNotCall.objects.get(phone="+14155550193").reason == ""


def test_roles_change_through_the_account_services_with_their_two_refusals(tenant_a):
    """tenants.accounts.services, which the users page uses: nobody changes their own role, the owner
    stays an admin, anyone else can be made an admin or a member."""
    from tenants.accounts.services import RoleChangeRefused, user_create, user_set_role

    with schema_context(tenant_a.tenant):
        owner = get_user_model().objects.get(username=tenant_a.admin_user)
        dora = user_create(username="dora", password="a-long-password", role="admin")
        eve = user_create(username="eve", email="eve@example.com", password="a-long-password")
        assert dora.is_staff and not eve.is_staff
        user_set_role(eve, role="admin", changed_by=dora)
        eve.refresh_from_db()
        assert eve.is_staff
        with pytest.raises(RoleChangeRefused, match="your own role"):
            user_set_role(dora, role="member", changed_by=dora)
        with pytest.raises(RoleChangeRefused, match="account owner"):
            user_set_role(owner, role="member", changed_by=dora)
        owner.refresh_from_db()
        assert owner.is_staff
