from django import forms
from django.contrib import admin

from core.admin_scope import TenantSchemaAdmin

from . import services
from .models import Campaign, CampaignContact, Contact, ContactList, DoNotCall


@admin.register(ContactList)
class ContactListAdmin(TenantSchemaAdmin):
    list_display = ("name", "default_region", "created_at")


@admin.register(Contact)
class ContactAdmin(TenantSchemaAdmin):
    list_display = ("phone", "name", "contact_list", "time_zone")
    list_filter = ("contact_list",)
    search_fields = ("phone", "name")


@admin.register(DoNotCall)
class DoNotCallAdmin(TenantSchemaAdmin):
    list_display = ("phone", "reason", "created_at")
    search_fields = ("phone",)


class CampaignAdminForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = "__all__"

    def clean_caller_ids(self):
        # Same rule as the API: only numbers the tenant owns.
        try:
            return services.validate_caller_ids(self.cleaned_data["caller_ids"])
        except forms.ValidationError as exc:
            raise forms.ValidationError(exc.message_dict["caller_ids"]) from None


@admin.register(Campaign)
class CampaignAdmin(TenantSchemaAdmin):
    form = CampaignAdminForm
    list_display = ("name", "state", "contact_list", "cps", "max_concurrent", "created_at")
    list_filter = ("state",)
    search_fields = ("name",)
    # State changes go through the services (start/pause/resume/cancel), not a form field.
    readonly_fields = ("state", "started_at", "dialing_since", "finished_at")


@admin.register(CampaignContact)
class CampaignContactAdmin(TenantSchemaAdmin):
    list_display = ("campaign", "contact", "state", "attempts", "next_attempt_at", "last_outcome")
    list_filter = ("campaign", "state")
    raw_id_fields = ("contact",)
    readonly_fields = ("updated_at",)
