"""A task runs in a real worker process, in the schema of the tenant that sent it."""
import pytest
from django.db import connection
from django_tenants.utils import schema_context
from tenant_schemas_celery.task import TenantTask

from campaigns.models import Contact, ContactList
from campaigns.tasks import count_contacts, dial_campaign, dispatch_dialers
from telephony.calls.tasks import deliver_webhook
from telephony.tasks import check_carrier, check_carriers, publish_inventory

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


def test_the_apps_shared_tasks_are_bound_to_the_tenant_aware_app():
    # The apps declare their tasks with shared_task (they import no project code); the project's
    # CeleryApp gives them tenant-schemas-celery's task class, so each one carries its schema.
    for task in (count_contacts, dispatch_dialers, dial_campaign, deliver_webhook, check_carriers,
                 check_carrier, publish_inventory):
        assert isinstance(task._get_current_object(), TenantTask), task.name
