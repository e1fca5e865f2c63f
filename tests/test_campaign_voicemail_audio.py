"""Acme records its renewal message in a studio (a 44.1 kHz stereo WAV) and uploads it for its
campaign's voicemail drop: it is kept as 8 kHz mu-law through Django's storage, the campaign's calls
play it after the beep instead of the spoken text, and anything that is not a WAV it can play is a
clear 400 naming the field."""
import io
import json
import math
import wave
from array import array

import pytest
from django.db import connection
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from django_tenants.utils import schema_context

from campaigns import dialer, services
from campaigns.models import Campaign, CampaignContact, Contact, ContactList
from core import keys
from core.redis_client import get_redis
from media import codec, wav_audio
from telephony.calls.services import CallPlacer
from telephony.calls.voicemail_audio import voicemail_storage
from telephony.models import Carrier, Number
from tenants.models import Tenant

pytestmark = pytest.mark.django_db
CALLER_ID = "+14155559000"


def wav(seconds: float, rate: int = 44100, channels: int = 2, hz: float = 440.0, width: int = 2) -> bytes:
    samples = [int(12000 * math.sin(2 * math.pi * hz * i / rate)) for i in range(int(seconds * rate))]
    if width == 1:
        pcm = bytes(128 + (v >> 8) for v in samples for _ in range(channels))
    else:
        pcm = array("h", (v for v in samples for _ in range(channels))).tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


def upload(key, campaign, data: bytes, name="renewal.wav"):
    file = io.BytesIO(data)
    file.name = name
    return Client(HTTP_AUTHORIZATION=f"Bearer {key}").put(
        f"/api/v1/campaigns/{campaign.pk}/voicemail-audio", encode_multipart(BOUNDARY, {"file": file}),
        content_type=MULTIPART_CONTENT)


@pytest.fixture
def campaign(tenant_a, settings, tmp_path):
    settings.STORAGES = {**settings.STORAGES, "voicemail": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "voicemail")}}}
    Carrier.objects.create(name="Primary", host="127.0.0.1", port=5099, priority=1)
    Number.objects.create(e164=CALLER_ID, tenant=Tenant.objects.get(schema_name="acme"))
    get_redis().delete(keys.tenant_queue("", "acme"))
    with schema_context(tenant_a.tenant):
        people = ContactList.objects.create(name="Acme renewals")
        Contact.objects.create(contact_list=people, phone="+14155550100", name="Ada", time_zone="UTC")
        yield Campaign.objects.create(
            name="Renewals", contact_list=people, caller_ids=[CALLER_ID], stream_url="wss://agent.example",
            machine_detection="DetectMessageEnd", on_machine="voicemail", voicemail_message="Please call Acme back.")
    connection.set_schema_to_public()


def tone_hz(ulaw: bytes) -> float:
    samples = array("h", codec.ulaw_to_lin16(ulaw))
    crossings = sum((a < 0) != (b < 0) for a, b in zip(samples, samples[1:], strict=False))
    return crossings * 8000 / (2 * len(samples))


def test_the_uploaded_recording_is_kept_as_8khz_mulaw_and_played_on_the_campaigns_calls(
        tenant_a, campaign, django_capture_on_commit_callbacks):
    response = upload(tenant_a.api_key, campaign, wav(1.5))
    assert response.status_code == 200, response.content
    name = response.json()["voicemail_audio"]
    assert name.startswith("acme/") and name.endswith(".ulaw")
    with voicemail_storage().open(name, "rb") as f:
        stored = f.read()
    assert len(stored) == 12000  # 1.5 s at 8 kHz, one byte a sample
    assert abs(tone_hz(stored) - 440) < 10  # the same tone, its two channels made one

    services.campaign_start(campaign.pk)
    campaign.refresh_from_db()
    rows = list(CampaignContact.objects.filter(campaign=campaign).select_related("contact"))
    with django_capture_on_commit_callbacks(execute=True):
        assert dialer._place(campaign, rows, CallPlacer(Tenant.objects.get(schema_name="acme")), 0) == 1
    (raw,) = get_redis().lrange(keys.tenant_queue("", "acme"), 0, -1)
    detection = json.loads(raw)["machine_detection"]
    assert detection["on_machine"] == "voicemail"
    assert get_redis().get(detection["voicemail_key"]) == stored  # the recording, not the spoken text


@pytest.mark.parametrize("data, words", [
    (b"name,phone\nAda,+14155550100\n", "not a PCM WAV"),
    (wav(0.5, width=1, channels=3), "3 channel"),
    (wav(wav_audio.MAX_SECONDS + 1, rate=8000, channels=1), "longer than 60 s"),
    (wav(0.0, rate=8000, channels=1), "no audio"),
])
def test_a_file_that_is_not_a_playable_wav_is_a_400_naming_the_field(tenant_a, campaign, data, words):
    response = upload(tenant_a.api_key, campaign, data)
    assert response.status_code == 400, response.content
    assert words in response.json()["voicemail_audio"][0]
    campaign.refresh_from_db()
    assert not campaign.voicemail_audio


def test_an_8bit_mono_telephone_recording_is_taken_as_it_is(tenant_a, campaign):
    response = upload(tenant_a.api_key, campaign, wav(1.0, rate=8000, channels=1, width=1, hz=600))
    assert response.status_code == 200, response.content
    with voicemail_storage().open(response.json()["voicemail_audio"], "rb") as f:
        stored = f.read()
    assert len(stored) == 8000 and abs(tone_hz(stored) - 600) < 10


def test_deleting_the_recording_goes_back_to_the_text_and_without_text_it_is_refused(tenant_a, campaign):
    assert upload(tenant_a.api_key, campaign, wav(0.5)).status_code == 200
    acme = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    # with only the recording to leave, the text may go …
    response = acme.patch(f"/api/v1/campaigns/{campaign.pk}", {"voicemail_message": ""}, content_type="application/json")
    assert response.status_code == 200, response.content
    # … but then the recording may not
    response = acme.delete(f"/api/v1/campaigns/{campaign.pk}/voicemail-audio")
    assert response.status_code == 400 and "voicemail_message" in response.json()
    acme.patch(f"/api/v1/campaigns/{campaign.pk}", {"voicemail_message": "Call us."}, content_type="application/json")
    response = acme.delete(f"/api/v1/campaigns/{campaign.pk}/voicemail-audio")
    assert response.status_code == 200 and not response.json()["voicemail_audio"]
