"""A tenant is a schema: created whole with its domain, admin and API key, or not at all."""
import json

import pytest
from django.db import connection
from django_tenants.utils import schema_context, schema_exists

from tenants.accounts.models import ApiKey
from tenants.models import Domain, Tenant
from tenants.services import TenantError, create_tenant, drop_tenant
from tests.support import run_manage

pytestmark = pytest.mark.usefixtures("committed")


def tables_of(schema):
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema])
        return {row[0] for row in cursor.fetchall()}


def test_creating_a_tenant_creates_its_schema_admin_and_key_and_deleting_drops_it():
    created = create_tenant("initech", "initech.localhost", name="Initech")
    try:
        assert schema_exists("initech")
        assert {"campaigns_contact", "accounts_apikey", "auth_user"} <= tables_of("initech")
        assert Domain.objects.get(domain="initech.localhost").tenant.schema_name == "initech"
        assert created.api_key.startswith(created.account_sid + ".")
        with schema_context("initech"):
            assert ApiKey.objects.count() == 1
    finally:
        drop_tenant("initech")
    assert not schema_exists("initech")
    assert not Tenant.objects.filter(schema_name="initech").exists()
    assert not Domain.objects.filter(domain="initech.localhost").exists()


@pytest.mark.parametrize(
    "slug, domain, message",
    [
        ("Bad Name!", "bad.localhost", "invalid tenant name"),
        ("public", "pub.localhost", "invalid tenant name"),
        ("okname", "not a host", "invalid domain"),
    ],
)
def test_invalid_names_are_refused_and_nothing_is_created(slug, domain, message):
    tenants_before = Tenant.objects.count()
    with pytest.raises(TenantError, match=message):
        create_tenant(slug, domain)
    assert Tenant.objects.count() == tenants_before
    assert not Domain.objects.filter(domain=domain).exists()
    assert not schema_exists("okname")


def test_a_domain_already_taken_is_refused_before_any_schema_exists(tenant_a):
    with pytest.raises(TenantError, match="already belongs"):
        create_tenant("copycat", tenant_a.domain)
    assert not schema_exists("copycat")


def test_a_failure_after_the_schema_exists_drops_it_again(monkeypatch):
    def broken_key(*args, **kwargs):
        raise RuntimeError("key store down")

    monkeypatch.setattr("tenants.services.issue_api_key", broken_key)
    with pytest.raises(RuntimeError, match="key store down"):
        create_tenant("halfway", "halfway.localhost")
    assert not schema_exists("halfway")
    assert not Tenant.objects.filter(schema_name="halfway").exists()
    assert not Domain.objects.filter(domain="halfway.localhost").exists()


def test_create_tenant_command_prints_one_json_object_for_scripts():
    result = run_manage("create_tenant", "hooli", "--domain", "hooli.localhost", "--json")
    try:
        assert result.returncode == 0, result.stderr
        created = json.loads(result.stdout)
        assert set(created) == {"tenant", "domain", "account_sid", "api_key", "admin_user", "admin_password"}
        assert created["tenant"] == "hooli" and created["domain"] == "hooli.localhost"
    finally:
        drop_tenant("hooli")


def test_create_tenant_command_explains_a_bad_name_in_one_line():
    result = run_manage("create_tenant", "Bad!", "--domain", "bad.localhost")
    assert result.returncode != 0
    assert "invalid tenant name" in result.stderr
    assert "Traceback" not in result.stderr
