from django.db import connection

from .models import Tenant


def current_tenant() -> Tenant:
    """The tenant whose schema the connection is in (schema_context only sets a stand-in object)."""
    tenant = getattr(connection, "tenant", None)
    if isinstance(tenant, Tenant):
        return tenant
    return Tenant.objects.get(schema_name=connection.schema_name)


def tenant_schemas() -> list[str]:
    """Every tenant's schema (not the public one)."""
    from django_tenants.utils import get_public_schema_name

    return list(Tenant.objects.exclude(schema_name=get_public_schema_name()).order_by("schema_name")
                .values_list("schema_name", flat=True))
