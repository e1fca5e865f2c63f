from django import forms
from django.contrib import admin
from voiceplatform.admin_scope import PublicSchemaAdmin

from .models import Carrier, CarrierHealthEvent, Number


class CarrierForm(forms.ModelForm):
    password = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="digest password; stored encrypted and never shown. Leave empty to keep the current one.",
    )
    clear_password = forms.BooleanField(required=False)

    class Meta:
        model = Carrier
        exclude = ["healthy", "health_failures", "health_successes", "health_checked_at", "health_rtt_ms"]

    def save(self, commit=True):
        carrier = super().save(commit=False)
        if self.cleaned_data.get("clear_password"):
            carrier.set_password("")
        elif self.cleaned_data.get("password"):
            carrier.set_password(self.cleaned_data["password"])
        if commit:
            carrier.save()
        return carrier


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
    list_display = ("e164", "tenant", "region", "inbound_stream_url")
    list_filter = ("region", "tenant")
    search_fields = ("e164",)
