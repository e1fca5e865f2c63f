"""Admin pages scoped to a schema: platform models on the public host, tenant models on a tenant's host.

Django's admin registry is global, and a tenant's search path also reaches the public schema, so
without this a tenant admin would see (and could edit) carriers and other tenants.
"""
from django.contrib import admin
from django.db import connection
from django_tenants.utils import get_public_schema_name


def on_public_schema() -> bool:
    return connection.schema_name == get_public_schema_name()


class SchemaScopedAdmin(admin.ModelAdmin):
    public_schema_only = True

    def in_scope(self) -> bool:
        return on_public_schema() == self.public_schema_only

    def has_module_permission(self, request):
        return self.in_scope() and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return self.in_scope() and super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return self.in_scope() and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return self.in_scope() and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self.in_scope() and super().has_delete_permission(request, obj)


class PublicSchemaAdmin(SchemaScopedAdmin):
    public_schema_only = True


class TenantSchemaAdmin(SchemaScopedAdmin):
    public_schema_only = False
