"""Writes the pages need that combine the apps' services (no business rule of its own lives here):
a contact list created and filled from an upload in one transaction, a do-not-call CSV, tenant users."""
from __future__ import annotations

import csv
import io
import logging

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
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


def do_not_call_import(data: bytes) -> dict:
    """Add every number of a CSV (column `phone`, or the first column; optional `reason`) to the
    do-not-call list, one services.do_not_call_add per row; bad rows are reported by line."""
    text = data.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    result = {"added": 0, "already": 0, "errors": [], "error_count": 0}
    header = None
    phone_at, reason_at = 0, None
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        line = reader.line_num
        if header is None:
            header = [uploads.column_key(h) for h in row]
            phone_at = next((header.index(n) for n in imports.PHONE_COLUMNS if n in header), None)
            reason_at = header.index("reason") if "reason" in header else None
            if phone_at is None:  # no header: the first column holds numbers, this row included
                phone_at, header = 0, []
            else:
                continue
        raw = row[phone_at].strip() if phone_at < len(row) else ""
        reason = row[reason_at].strip()[:255] if reason_at is not None and reason_at < len(row) else ""
        try:
            _, created = services.do_not_call_add(phone=raw, reason=reason)
        except ValidationError as exc:
            result["error_count"] += 1
            if len(result["errors"]) < imports.MAX_REPORTED_ERRORS:
                result["errors"].append({"line": line, "value": raw[:100], "reason": "; ".join(exc.messages)})
            continue
        result["added" if created else "already"] += 1
    return result


def user_create(*, username: str, email: str, password: str, is_admin: bool):
    """A user of the current tenant schema: an admin (staff) or a member."""
    return get_user_model().objects.create_user(username, email=email, password=password, is_staff=is_admin)


def user_set_admin(user, is_admin: bool) -> None:
    user.is_staff = is_admin
    user.save(update_fields=["is_staff"])


def publish_inventory_quietly() -> str | None:
    """Hand the gateways the new carrier/number inventory; the error text if Redis is unreachable
    (the beat task publishes it again every 30 s)."""
    try:
        telephony_services.publish_inventory()
    except Exception as exc:  # Redis down: the change is saved, only the push is late
        log.warning("publish_inventory failed", exc_info=True)
        return str(exc)
    return None
