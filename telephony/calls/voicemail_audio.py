"""Voicemail messages from uploaded audio files: converted once to 8 kHz mu-law (media/wav_audio.py)
and kept through Django's storage API (settings.STORAGES["voicemail"]) under a name made of the
tenant's schema and the audio's hash; a call carries the Redis key the gateway plays it from, put
there from storage the first time it is needed (media/fallback.py does the same for spoken text)."""
from __future__ import annotations

import hashlib
import logging

from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connection

from media import fallback, wav_audio

log = logging.getLogger(__name__)

AudioFileError = wav_audio.AudioFileError
_in_redis: set[str] = set()  # keys this process already put in Redis


def voicemail_storage():
    return storages["voicemail"]


def store(data: bytes) -> str:
    """Convert an uploaded WAV (bytes) and keep it; returns its storage name. Raises AudioFileError."""
    ulaw = wav_audio.to_ulaw(data)
    name = f"{connection.schema_name}/{hashlib.sha256(ulaw).hexdigest()[:32]}.ulaw"
    storage = voicemail_storage()
    if not storage.exists(name):
        name = storage.save(name, ContentFile(ulaw))
    return name


def audio_key(redis, name: str) -> str:
    """The Redis key of the stored audio ``name`` for the gateway; "" when it cannot be read (the
    call then goes without it: a machine is hung up on, media/amd_call.py)."""
    key = fallback.KEY_PREFIX + "file:" + name
    if key in _in_redis:
        return key
    if not redis.exists(key):
        try:
            with voicemail_storage().open(name, "rb") as f:
                redis.set(key, f.read())
        except OSError as error:
            log.warning("voicemail audio %s not available, calls go without it: %s", name, error)
            return ""
    _in_redis.add(key)
    return key
