"""Acme's Twilio code reads its recordings with Twilio's client unchanged: two of its calls were
recorded (the media host's WAVs moved into the run's S3-compatible bucket by the platform's own
service); the Recordings list (all, and a call's), paging, fetch with Twilio's fields, the WAV
downloaded from media_url with the account's credentials, and delete, which empties the bucket.

Real parts: daphne serving the API, Twilio's client, the S3-compatible server (moto)."""
import array
import base64
import os
import urllib.error
import urllib.parse
import urllib.request
import wave

import pytest
from django.conf import settings
from django_tenants.utils import schema_context
from twilio.base.exceptions import TwilioRestException

from telephony.calls import recordings
from telephony.calls.models import Call
from tenants import auth_token
from tests.twilio_support import ACME_NUMBER, CALLEE, acme_client

pytestmark = pytest.mark.usefixtures("committed")


def spool_wav(call_sid: str, seconds: float) -> bytes:
    """The stereo WAV a media host leaves in the spool directory at the end of a recorded call."""
    os.makedirs(settings.RECORDINGS_SPOOL_DIR, exist_ok=True)
    path = os.path.join(settings.RECORDINGS_SPOOL_DIR, f"{call_sid}.wav")
    with wave.open(path, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(array.array("h", [1000, -1000] * int(8000 * seconds)).tobytes())
    with open(path, "rb") as spooled:
        return spooled.read()


def recorded_call(seconds: float) -> tuple[str, bytes]:
    """A call of Acme's that was recorded: its sid, and the WAV, stored as the platform's task does."""
    with schema_context("acme"):
        call = Call.objects.create(from_number=ACME_NUMBER, to_number=CALLEE, status="completed",
                                   outcome="answered", record=True)
        wav = spool_wav(call.sid, seconds)
        recordings.store_recording(call.sid, f"{call.sid}.wav", seconds)
    return call.sid, wav


def download(url: str, acme, port: int) -> tuple[int, str, bytes]:
    """The media as Acme's code downloads it (HTTP basic with the account SID and auth token)."""
    url = f"http://127.0.0.1:{port}{urllib.parse.urlsplit(url).path}"  # PUBLIC_BASE_URL is not this daphne
    credentials = base64.b64encode(f"{acme.account_sid}:{auth_token.current(acme)}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {credentials}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read()


def test_acme_lists_fetches_downloads_and_deletes_its_recordings(acme, web, object_store):
    first_call, first_wav = recorded_call(1.0)
    second_call, second_wav = recorded_call(2.0)
    client = acme_client(acme, web)

    listed = client.recordings.list(page_size=1)  # two pages, fetched through next_page_uri
    assert [r.call_sid for r in listed] == [second_call, first_call]
    newest = listed[0]
    assert (newest.duration, newest.channels, newest.status, newest.source) == ("2", 2, "completed", "OutboundAPI")
    assert newest.account_sid == acme.account_sid and newest.sid.startswith("RE")
    assert [r.sid for r in client.calls(first_call).recordings.list()] == [listed[1].sid]
    assert [r.sid for r in client.recordings.list(call_sid=second_call)] == [newest.sid]

    fetched = client.recordings(newest.sid).fetch()
    assert (fetched.call_sid, fetched.duration, fetched.uri) == (
        second_call, "2", f"/2010-04-01/Accounts/{acme.account_sid}/Recordings/{newest.sid}.json")
    for url in (fetched.media_url, fetched.media_url + ".wav"):
        status, content_type, body = download(url, acme, web)
        assert (status, content_type, body) == (200, "audio/x-wav", second_wav)
    assert f"acme/{newest.sid}.wav" in object_store.keys()
    with pytest.raises(urllib.error.HTTPError) as anonymous:  # the media is the account's, as on Twilio by default
        urllib.request.urlopen(f"http://127.0.0.1:{web}{urllib.parse.urlsplit(fetched.media_url).path}", timeout=10)
    assert anonymous.value.code == 401

    assert client.recordings(newest.sid).delete() is True
    with pytest.raises(TwilioRestException) as gone:
        client.recordings(newest.sid).fetch()
    assert (gone.value.status, gone.value.code) == (404, 20404)
    assert f"acme/{newest.sid}.wav" not in object_store.keys()
    assert [r.call_sid for r in client.recordings.list()] == [first_call]
    client.recordings(listed[1].sid).delete()
    assert f"acme/{listed[1].sid}.wav" not in object_store.keys()
