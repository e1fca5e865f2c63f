"""What a tenant dials: contact lists and contacts. Tenant schema."""
from django.db import models


class ContactList(models.Model):
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    contact_list = models.ForeignKey(ContactList, related_name="contacts", on_delete=models.CASCADE)
    phone = models.CharField(max_length=20, help_text="E.164")
    name = models.CharField(max_length=200, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    # Every other CSV column, passed to the AI agent as custom parameters.
    variables = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["contact_list", "phone"], name="unique_phone_per_list")]

    def __str__(self) -> str:
        return self.phone
