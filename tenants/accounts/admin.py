from django.contrib import admin

from core.admin_scope import TenantSchemaAdmin

from .models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(TenantSchemaAdmin):
    list_display = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "secret_hash", "created_at", "last_used_at")
