from django.db.models import Count, QuerySet

from .models import ContactList


def contact_lists() -> QuerySet[ContactList]:
    return ContactList.objects.annotate(contact_count=Count("contacts"))
