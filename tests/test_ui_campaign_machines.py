"""Mia builds Acme's renewal campaign in the browser and sets what happens when an answering machine
picks up: detection waiting for the beep, a recorded voicemail message (a WAV she uploads) and her
timeouts; a voicemail without any message, or a file that is not a WAV, is refused next to the field
with what she typed kept."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import Campaign
from telephony.calls.voicemail_audio import voicemail_storage
from tests.test_campaign_voicemail_audio import wav
from tests.test_ui_campaigns import CALLING, acme_number, member, upload  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db
AGENT = {"stream_url": "wss://agent.example.com/media", "custom_parameters": "voice=alloy"}


@pytest.fixture
def at_agent_step(member, acme_number, settings, tmp_path):  # noqa: F811
    settings.STORAGES = {**settings.STORAGES, "voicemail": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "vm")}}}
    upload(member)
    member.post("/campaigns/new/columns/", {"phone": "0", "name": "1", "time_zone": "2", "default_region": "US"})
    member.post("/campaigns/new/calling/", CALLING)
    return member


def test_the_agent_step_offers_the_answering_machine_settings(at_agent_step):
    page = at_agent_step.get("/campaigns/new/agent/").content.decode()
    assert "Answering machines" in page and 'enctype="multipart/form-data"' in page
    for words in ("wait for the end of a machine", "Leave a voicemail message after the beep", "Connect the agent anyway",
                  "a recorded voicemail message", "Detection time limit"):
        assert words in page


def test_a_recorded_voicemail_message_and_timeouts_are_saved_on_the_draft(at_agent_step):
    response = at_agent_step.post("/campaigns/new/agent/", {
        **AGENT, "machine_detection": "DetectMessageEnd", "on_machine": "voicemail",
        "voicemail_audio": SimpleUploadedFile("renewal.wav", wav(1.0), content_type="audio/wav"),
        "machine_detection_timeout": "40", "machine_detection_silence_timeout": "4",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    campaign = Campaign.objects.latest("pk")
    assert (campaign.machine_detection, campaign.on_machine) == ("DetectMessageEnd", "voicemail")
    assert (campaign.machine_detection_timeout, campaign.machine_detection_silence_timeout) == (40, 4000)
    with voicemail_storage().open(campaign.voicemail_audio.name, "rb") as f:
        assert len(f.read()) == 8000  # one second of 8 kHz mu-law
    review = at_agent_step.get(f"/campaigns/{campaign.pk}/review/").content.decode()
    assert "leave the recorded message" in review
    # back on the step, the recording is on file and can be removed for the text
    page = at_agent_step.get("/campaigns/new/agent/").content.decode()
    assert campaign.voicemail_audio.name in page and "Remove the recorded message" in page
    response = at_agent_step.post("/campaigns/new/agent/", {
        **AGENT, "machine_detection": "DetectMessageEnd", "on_machine": "voicemail", "remove_voicemail_audio": "on",
        "voicemail_message": "Hi, Acme here about your renewal.", "machine_detection_timeout": "40",
        "machine_detection_silence_timeout": "4"})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert not campaign.voicemail_audio and campaign.voicemail_message == "Hi, Acme here about your renewal."


def test_a_voicemail_without_a_message_or_with_a_bad_file_is_refused_next_to_the_field(at_agent_step):
    nothing = at_agent_step.post("/campaigns/new/agent/", {**AGENT, "machine_detection": "Enable",
                                                           "on_machine": "voicemail"})
    assert nothing.status_code == 200
    assert "Write the message to leave, or upload a recording of it." in nothing.content.decode()
    bad = at_agent_step.post("/campaigns/new/agent/", {
        **AGENT, "machine_detection": "Enable", "on_machine": "voicemail", "machine_detection_timeout": "70",
        "voicemail_audio": SimpleUploadedFile("contacts.csv", b"name,phone\n", content_type="text/csv")})
    html = bad.content.decode()
    assert bad.status_code == 200 and "less than or equal to 59" in html
    assert not Campaign.objects.exists()
    bad = at_agent_step.post("/campaigns/new/agent/", {
        **AGENT, "machine_detection": "Enable", "on_machine": "voicemail",
        "voicemail_audio": SimpleUploadedFile("contacts.csv", b"name,phone\n", content_type="text/csv")})
    html = bad.content.decode()
    assert bad.status_code == 200 and "not a PCM WAV file" in html and "wss://agent.example.com/media" in html
    assert not Campaign.objects.exists()
