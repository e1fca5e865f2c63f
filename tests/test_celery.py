"""A task runs in a real worker process, in the schema of the tenant that sent it."""
import pytest
from django.db import connection
from django_tenants.utils import schema_context

from campaigns.models import Contact, ContactList
from campaigns.tasks import count_contacts

pytestmark = pytest.mark.usefixtures("committed")


def test_a_task_counts_contacts_in_the_senders_schema(tenant_a, tenant_b, celery_worker_process):
    with schema_context(tenant_a.tenant):
        contact_list = ContactList.objects.create(name="Acme renewals")
        Contact.objects.bulk_create(
            Contact(contact_list=contact_list, phone=f"+1415555010{i}") for i in range(3)
        )
    try:
        with schema_context(tenant_a.tenant):
            assert count_contacts.delay(contact_list.pk).get(timeout=30) == 3
        with schema_context(tenant_b.tenant):
            # Globex has no such list: the worker looked in Globex's schema, not Acme's.
            with pytest.raises(Exception, match="does not exist"):
                count_contacts.delay(contact_list.pk).get(timeout=30)
    finally:
        with schema_context(tenant_a.tenant):
            contact_list.delete()
        connection.set_schema_to_public()
