"""End to end: Acme records a call. Its code places a bridged call with ``record: true``; the carrier's
callee (SIPp) says something once it answers (a second of 400 Hz, from a pcap) and the agent answers
as soon as it is connected (a second of 1000 Hz). The media host writes the call as a stereo WAV, the
recorder hands it to a Celery worker that moves it into the recordings storage (the run's S3-compatible
bucket, tests/object_store.py), and Acme's code finds it at /api/v1/recordings: the callee on the left
channel, the agent on the right, each where it spoke. Deleting it removes the object from the bucket;
the tenant's retention deletes old ones."""
import array
import datetime as dt
import io
import time
import wave

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from telephony.calls import tasks
from telephony.calls.models import Call, Recording
from telephony.models import Number
from tenants.models import Tenant
from tests import stack
from tests.conversation import write_rtp_pcap
from tests.gateway.test_recording import tone_blocks, tone_frames
from tests.support import project_env, run_manage, wait_until
from tests.test_call_digits import agents  # noqa: F401 - fixture: Twilio-protocol agents
from tests.test_call_flow import platform  # noqa: F401 - fixture: the gateway pool and the recorder

pytestmark = pytest.mark.usefixtures("committed")
ACME_NUMBER = "+14155550126"


@pytest.fixture
def speaking_callee(tmp_path):
    """A carrier whose callee answers and says one second of 400 Hz at once."""
    pcap = write_rtp_pcap(tmp_path / "hello.pcap", [(0, f) for f in tone_frames(400, 1.0)])
    with stack.media_trunk(tmp_path, "Talking trunk", play_pcap=pcap) as carrier:
        number = Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme"))
        yield carrier
        number.delete()


def channels(wav_bytes: bytes):
    with wave.open(io.BytesIO(wav_bytes)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        frames = array.array("h", w.readframes(w.getnframes()))
    return frames[0::2], frames[1::2]


def test_a_recorded_call_is_stored_and_served_with_each_voice_on_its_channel(
        platform, celery_worker_process, speaking_callee, agents, tenant_a, object_store):  # noqa: F811
    api = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}")
    response = api.post("/api/v1/calls", {
        "to": "+14155550199", "from": ACME_NUMBER, "timeout": 15, "stream_url": agents.url("/record"),
        "record": True,
    }, content_type="application/json")
    connection.set_schema_to_public()
    assert response.status_code == 201, response.content
    sid = response.json()["sid"]
    conn = agents.conn_for(sid, timeout=20)
    agents.send_audio(conn, b"".join(tone_frames(1000, 1.0)))
    wait_until(lambda: len(conn.media()) >= 50, 10, what="the callee's second of speech")
    time.sleep(1.0)  # the agent's tone plays out
    assert api.post(f"/api/v1/calls/{sid}/hangup").status_code == 202
    connection.set_schema_to_public()
    call = stack.final_call("acme", sid, platform)
    assert call.record and call.ai_connect_ms is not None

    def listed():
        rows = api.get(f"/api/v1/recordings?call={sid}").json()["results"]
        connection.set_schema_to_public()
        return rows
    [recording] = wait_until(listed, 30, what="the stored recording")
    assert recording["call_sid"] == sid and recording["channels"] == 2
    assert api.get(f"/api/v1/recordings/{recording['sid']}").json() == recording
    media = api.get(recording["media_url"])
    connection.set_schema_to_public()
    assert media.status_code == 200 and media["Content-Type"] == "audio/wav"
    left, right = channels(b"".join(media.streaming_content))
    assert abs(len(left) / 8000 - recording["duration_s"]) < 0.05

    callee, agent = tone_blocks(left, 400), tone_blocks(right, 1000)
    assert not tone_blocks(left, 1000) and not tone_blocks(right, 400)  # one voice per channel
    assert 48 <= len(callee) <= 50 and 48 <= len(agent) <= 50
    assert callee[0] * 0.02 < 0.3  # the callee spoke as it answered
    # the agent spoke once connected: the recording's timeline starts at the answer, as ai_connect_ms
    assert abs(agent[0] * 0.02 - call.ai_connect_ms / 1000) < 0.3, (agent[0], call.ai_connect_ms)

    with schema_context("acme"):
        stored = Recording.objects.get(sid=recording["sid"])
    assert f"acme/{recording['sid']}.wav" in object_store.keys()  # in the bucket, under the tenant
    assert api.delete(f"/api/v1/recordings/{recording['sid']}").status_code == 204
    connection.set_schema_to_public()
    assert stored.file.name not in object_store.keys()
    assert api.get(f"/api/v1/recordings/{recording['sid']}").status_code == 404
    connection.set_schema_to_public()
    with schema_context("acme"):
        Call.objects.filter(sid=sid).delete()


def test_recordings_older_than_the_tenants_retention_are_deleted(tenant_a, object_store):
    with schema_context("acme"):
        call = Call.objects.create(from_number=ACME_NUMBER, to_number="+14155550199", record=True)
        old, recent = Recording(call=call, duration_s=1.0), Recording(
            call=Call.objects.create(from_number=ACME_NUMBER, to_number="+14155550198", record=True), duration_s=1.0)
        for recording in (old, recent):
            recording.file.save(f"{recording.sid}.wav", ContentFile(b"RIFF"), save=True)
        Recording.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=91))
    tasks.delete_expired_recordings()  # Acme keeps 90 days (the default)
    with schema_context("acme"):
        assert list(Recording.objects.values_list("sid", flat=True)) == [recent.sid]
        assert old.file.name not in object_store.keys() and recent.file.name in object_store.keys()
        recent.file.delete(save=False)
        Call.objects.filter(record=True).delete()
    connection.set_schema_to_public()


def test_without_a_bucket_recordings_stay_in_the_var_directory():
    env = {name: value for name, value in project_env().items() if not name.startswith("RECORDINGS_S3_")}
    result = run_manage("shell", "-c", "from django.core.files.storage import storages; "
                        "s = storages['recordings']; print(type(s).__name__, s.location)", env=env)
    assert result.returncode == 0, result.stderr
    kind, location = result.stdout.splitlines()[-1].split()
    assert kind == "FileSystemStorage" and location.endswith("var/recordings/store")
