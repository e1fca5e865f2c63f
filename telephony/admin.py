from django.contrib import admin

from core.admin_scope import PublicSchemaAdmin

from .forms import CarrierForm
from .models import Carrier, CarrierHealthEvent, Number


class HealthEventInline(admin.TabularInline):
    model = CarrierHealthEvent
    extra = 0
    can_delete = False
    readonly_fields = ("healthy", "reason", "at")


@admin.register(Carrier)
class CarrierAdmin(PublicSchemaAdmin):
    form = CarrierForm
    list_display = ("name", "host", "port", "transport", "region", "priority", "weight", "enabled", "healthy",
                     "health_rtt_ms", "max_cps", "max_concurrent")
    list_filter = ("enabled", "healthy", "region", "transport")
    readonly_fields = ("healthy", "health_checked_at", "health_rtt_ms")
    inlines = [HealthEventInline]


@admin.register(Number)
class NumberAdmin(PublicSchemaAdmin):
    list_display = ("e164", "tenant", "region", "inbound_stream_url", "voice_url")
    list_filter = ("region", "tenant")
    search_fields = ("e164",)
