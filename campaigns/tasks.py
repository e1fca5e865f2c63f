from voiceplatform.celery import app

from .models import ContactList


@app.task
def count_contacts(contact_list_id: int) -> int:
    """Counted in the tenant's schema: tenant-schemas-celery passes the schema with the task."""
    return ContactList.objects.get(pk=contact_list_id).contacts.count()
