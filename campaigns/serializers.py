from rest_framework import serializers

from .models import Contact, ContactList


class ContactListSerializer(serializers.ModelSerializer):
    contact_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = ContactList
        fields = ["id", "name", "created_at", "contact_count"]


class ContactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Contact
        fields = ["id", "contact_list", "phone", "name", "time_zone", "variables"]
