"""Recorded calls: the media host's WAV moved from the spool directory into storage, and deleted again
(by the API or after the tenant's retention). Runs in the tenant's schema."""
from __future__ import annotations

import datetime as dt
import logging
import os

from django.conf import settings
from django.core.files import File
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from tenants.selectors import current_tenant

from . import recording_callbacks
from .models import Call, Recording

log = logging.getLogger(__name__)


class NotSpooledYet(Exception):
    """The media host has not finished writing the file (it writes at the end of the call)."""


def store_recording(call_sid: str, file_name: str, duration_s: float) -> Recording | None:
    """Move a recorded call's spooled WAV into storage and record it. Idempotent: a recording already
    stored is returned again (its spool copy removed). Raises NotSpooledYet while the file is missing.
    The call's RecordingStatusCallback (completed) is queued once."""
    call = Call.objects.filter(sid=call_sid).first()
    if call is None:
        log.warning("recording of unknown call %s left in the spool", call_sid)
        return None
    path = os.path.join(settings.RECORDINGS_SPOOL_DIR, os.path.basename(file_name))
    existing = Recording.objects.filter(call=call).first()
    if existing is None:
        if not os.path.exists(path):
            raise NotSpooledYet(path)
        recording = Recording(call=call, duration_s=duration_s)
        with open(path, "rb") as spooled:
            recording.file.save(f"{connection.schema_name}/{recording.sid}.wav", File(spooled), save=False)
        try:
            with transaction.atomic():
                recording.save()
        except IntegrityError:  # stored twice at once: keep the first
            recording.file.delete(save=False)
            recording = Recording.objects.get(call=call)
    else:
        recording = existing
    recording_callbacks.enqueue(call, "completed", current_tenant().account_sid, recording)
    if os.path.exists(path):
        os.unlink(path)
    return recording


def give_up(call_sid: str) -> None:
    """The media host never spooled the call's WAV: the call's RecordingStatusCallback (absent)."""
    if call := Call.objects.filter(sid=call_sid).first():
        recording_callbacks.enqueue(call, "absent", current_tenant().account_sid)


def delete_recording(recording: Recording) -> None:
    """The file from storage, then the record."""
    recording.file.delete(save=False)
    recording.delete()


def delete_expired(retention_days: int) -> int:
    """Recordings older than ``retention_days`` (0: kept forever) deleted, file and record."""
    if retention_days <= 0:
        return 0
    cutoff = timezone.now() - dt.timedelta(days=retention_days)
    expired = list(Recording.objects.filter(created_at__lt=cutoff))
    for recording in expired:
        delete_recording(recording)
    return len(expired)
