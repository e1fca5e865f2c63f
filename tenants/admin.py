from django.contrib import admin

from core.admin_scope import PublicSchemaAdmin

from .models import Domain, Tenant


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Tenant)
class TenantAdmin(PublicSchemaAdmin):
    list_display = ("schema_name", "name", "account_sid", "is_suspended", "created_at")
    search_fields = ("schema_name", "name", "account_sid")
    readonly_fields = ("account_sid", "created_at")
    inlines = [DomainInline]
