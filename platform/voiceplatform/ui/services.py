"""Writes the pages need that combine the apps' services (no business rule of its own lives here):
a contact list created and filled from an upload as the column-mapping step rewrote it, in one
transaction; the inventory pushed to the gateways after a platform admin's change. Do-not-call
imports are campaigns.dnc; tenant users are tenants.accounts.services."""
from __future__ import annotations

import io
import logging

from django.db import transaction

from campaigns import imports, services
from campaigns.models import ContactList
from telephony import services as telephony_services

from . import uploads

log = logging.getLogger(__name__)


def contact_list_from_upload(*, name: str, data: bytes, header: list[str], default_region: str
                             ) -> tuple[ContactList, imports.ImportReport]:
    """A new contact list filled from the uploaded file with its header rewritten by the mapping; a
    file the importer rejects as a whole leaves no list behind (imports.ImportRejected propagates)."""
    stream = io.BytesIO(uploads.with_header(data, header))
    with transaction.atomic():
        contact_list = services.contact_list_create(name=name[:200], default_region=default_region)
        report = services.contact_list_import(contact_list, stream, size=len(stream.getbuffer()),
                                              default_region=default_region)
    return contact_list, report


def publish_inventory_quietly() -> str | None:
    """Hand the gateways the new carrier/number inventory; the error text if Redis is unreachable
    (the beat task publishes it again every 30 s)."""
    try:
        telephony_services.publish_inventory()
    except Exception as exc:  # Redis down: the change is saved, only the push is late
        log.warning("publish_inventory failed", exc_info=True)
        return str(exc)
    return None
