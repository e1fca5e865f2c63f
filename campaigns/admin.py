from django.contrib import admin
from voiceplatform.admin_scope import TenantSchemaAdmin

from .models import Contact, ContactList


@admin.register(ContactList)
class ContactListAdmin(TenantSchemaAdmin):
    list_display = ("name", "created_at")


@admin.register(Contact)
class ContactAdmin(TenantSchemaAdmin):
    list_display = ("phone", "name", "contact_list", "time_zone")
    list_filter = ("contact_list",)
    search_fields = ("phone", "name")
