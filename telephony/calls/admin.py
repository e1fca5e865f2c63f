from django.contrib import admin

from core.admin_scope import TenantSchemaAdmin

from .models import Call, CallLeg


class CallLegInline(admin.TabularInline):
    model = CallLeg
    extra = 0
    can_delete = False
    readonly_fields = [f.name for f in CallLeg._meta.fields if f.name != "id"]


@admin.register(Call)
class CallAdmin(TenantSchemaAdmin):
    list_display = ("sid", "direction", "from_number", "to_number", "status", "outcome", "reason", "created_at",
                    "duration_s")
    list_filter = ("status", "outcome", "direction")
    search_fields = ("sid", "to_number", "from_number")
    readonly_fields = [f.name for f in Call._meta.fields if f.name != "id"]
    inlines = [CallLegInline]

    def has_add_permission(self, request):
        return False
