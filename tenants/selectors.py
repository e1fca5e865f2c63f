from django.db import connection

from .models import Tenant


def current_tenant() -> Tenant:
    """The tenant whose schema the connection is in (schema_context only sets a stand-in object)."""
    tenant = getattr(connection, "tenant", None)
    if isinstance(tenant, Tenant):
        return tenant
    return Tenant.objects.get(schema_name=connection.schema_name)
