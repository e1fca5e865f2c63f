"""The campaign builder and the campaign page, through the Django test client: every step validates
what was typed (messages next to the field, input kept), the CSV import reports bad rows by line and
keeps the good ones, and the campaign page's actions and progress go through the campaign services."""
import csv
import datetime as dt
import io
import json
import zoneinfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_tenants.utils import schema_context

from campaigns.models import Campaign, CampaignContact
from campaigns.services import campaign_contacts_claim, record_attempt_outcome
from telephony.calls.models import Call
from telephony.models import Number
from tenants.models import Tenant
from tests.ui_support import make_user, signed_in

pytestmark = pytest.mark.django_db

CSV = (
    "Mobile,Full Name,Zone,plan,number\n"
    "+14155550101,Ada,America/Los_Angeles,gold,x1\n"
    "not a number,Bad Row,UTC,silver,x2\n"
    "+14155550102,Grace,Mars/Olympus,gold,x3\n"
    "+14155550103,Alan,,silver,x4\n"
    "(415) 555-0104,Local,,bronze,x5\n"
    "+14155550101,Ada again,UTC,gold,x6\n"
)



@pytest.fixture
def acme_number(tenant_a):
    return Number.objects.create(e164="+14155550199", tenant=Tenant.objects.get(schema_name=tenant_a.tenant))


@pytest.fixture
def member(tenant_a):
    make_user(tenant_a.tenant, "mia")
    return signed_in(tenant_a.domain, "mia")


def upload(client, content=CSV, name="contacts.csv", campaign="Spring promo"):
    return client.post("/campaigns/new/?restart=", {
        "name": campaign, "file": SimpleUploadedFile(name, content.encode() if isinstance(content, str) else content),
    })


CALLING = {
    "caller_ids": ["+14155550199"], "cps": "2", "max_concurrent": "5", "window_start": "00:00",
    "window_end": "23:59", "weekdays": [str(d) for d in range(7)], "default_time_zone": "UTC", "ring_timeout": "30",
    "retry_busy_max_attempts": "2", "retry_busy_delay_s": "300", "retry_no_answer_max_attempts": "2",
    "retry_no_answer_delay_s": "600", "retry_failed_max_attempts": "1", "retry_failed_delay_s": "60",
}


def build_draft(client) -> Campaign:
    assert upload(client).status_code == 302
    assert client.post("/campaigns/new/columns/", {"phone": "0", "name": "1", "time_zone": "2",
                                                  "default_region": "US"}).status_code == 302
    assert client.post("/campaigns/new/calling/", CALLING).status_code == 302
    response = client.post("/campaigns/new/agent/", {"stream_url": "wss://agent.example.com/media",
                                                     "custom_parameters": "voice=alloy\nlanguage=en"})
    assert response.status_code == 302, response.content.decode()[:3000]
    return Campaign.objects.latest("pk")


def test_upload_preview_mapping_and_line_by_line_report(member, tenant_a):
    response = upload(member)
    assert response["Location"] == "/campaigns/new/columns/"
    page = member.get("/campaigns/new/columns/").content.decode()
    assert "Ada" in page and "not a number" in page  # the first rows
    # 'number' is a name the importer would take for the phone: it is guessed, the person picks Mobile
    response = member.post("/campaigns/new/columns/", {"phone": "0", "name": "1", "time_zone": "2", "default_region": "US"})
    assert response["Location"] == "/campaigns/new/report/"
    report = member.get("/campaigns/new/report/").content.decode()
    assert "Rows with errors" in report
    assert "not a number" in report and "Mars/Olympus" in report
    assert 'id="import-duplicates"' in report and "<td>same number as line 2</td>" in report
    with schema_context(tenant_a.tenant):
        from campaigns.models import ContactList

        contact_list = ContactList.objects.latest("pk")
        contacts = {c.phone: c for c in contact_list.contacts.all()}
    assert set(contacts) == {"+14155550101", "+14155550103", "+14155550104"}  # good rows kept, duplicate skipped
    assert contacts["+14155550101"].name == "Ada"
    assert contacts["+14155550101"].time_zone == "America/Los_Angeles"
    # the unmapped 'number' column stays a variable under a name the importer does not take for a phone
    assert contacts["+14155550101"].variables == {"plan": "gold", "number (column 5)": "x1"}


def test_a_mapping_that_uses_one_column_twice_is_refused_next_to_the_field(member):
    upload(member)
    response = member.post("/campaigns/new/columns/", {"phone": "0", "name": "0", "time_zone": "", "default_region": "US"})
    assert response.status_code == 200
    assert "already used as the phone column" in response.content.decode()


@pytest.mark.parametrize("name, content, message", [
    ("contacts.xlsx", b"PK\x03\x04binary", "Save it as CSV UTF-8"),
    ("contacts.pdf", b"%PDF-1.4", "Only CSV files are accepted"),
    ("contacts.csv", b"", "empty"),
])
def test_files_in_the_wrong_format_are_refused_with_what_is_accepted(member, name, content, message):
    response = upload(member, content, name=name, campaign="Kept name")
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html and "UTF-8" in html
    assert 'value="Kept name"' in html  # what was typed is kept


def test_a_file_over_the_limit_is_refused_with_the_limit(member, settings):
    settings.CONTACT_UPLOAD_MAX_BYTES = 100
    response = upload(member, "phone\n" + "+14155550101\n" * 20)
    assert response.status_code == 200
    assert "files up to 100 bytes are accepted" in response.content.decode()


def test_a_file_that_is_not_utf8_is_refused_at_upload(member):
    response = upload(member, "phone,name\n+14155550101,Jos\xe9\n".encode("latin-1"))
    assert response.status_code == 200
    assert "This file is not UTF-8" in response.content.decode()


def test_a_file_the_importer_rejects_imports_nothing_and_says_why(member, tenant_a):
    # valid UTF-8 in the preview, broken after it: the importer checks the whole file
    content = ("phone,name\n" + "+14155550101,Ada\n" * 20000).encode() + b"\xff\n"
    upload(member, content)
    response = member.post("/campaigns/new/columns/", {"phone": "0", "name": "1", "default_region": "US"})
    assert response.status_code == 200
    assert "Nothing was imported: file is not UTF-8" in response.content.decode()
    with schema_context(tenant_a.tenant):
        from campaigns.models import ContactList

        assert not ContactList.objects.exists()


def test_calling_step_validates_and_keeps_input(member, acme_number):
    build = upload(member)
    assert build.status_code == 302
    member.post("/campaigns/new/columns/", {"phone": "0", "name": "1", "time_zone": "2", "default_region": "US"})
    bad = {**CALLING, "window_start": "20:00", "window_end": "08:00", "cps": "0", "default_time_zone": "Mars/Base",
           "caller_ids": [], "max_concurrent": "7"}
    response = member.post("/campaigns/new/calling/", bad)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Must be later than the opening time" in html
    assert "Unknown time zone" in html
    assert "greater than or equal to 0.1" in html
    assert 'value="7"' in html  # kept
    assert "This field is required" in html  # caller IDs


def test_agent_step_validates_url_and_parameters(member, acme_number):
    upload(member)
    member.post("/campaigns/new/columns/", {"phone": "0", "name": "1", "time_zone": "2", "default_region": "US"})
    member.post("/campaigns/new/calling/", CALLING)
    response = member.post("/campaigns/new/agent/", {"stream_url": "ftp://x", "custom_parameters": "novalue",
                                                     "optout_digit": "x"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Must start with wss://" in html and "line 1: write name=value" in html and "Use one key" in html
    # a name the platform sets on every call would be silently replaced: refused, not lost
    taken = member.post("/campaigns/new/agent/", {"stream_url": "wss://agent.example.com/media",
                                                  "custom_parameters": "voice=alloy\nto_number=+1555"})
    assert "to_number: the platform sets this name on every call" in taken.content.decode()
    assert not Campaign.objects.exists()


def test_a_caller_id_of_another_tenant_is_refused(member, tenant_a, tenant_b, acme_number):
    Number.objects.create(e164="+14155550177", tenant=Tenant.objects.get(schema_name=tenant_b.tenant))
    upload(member)
    member.post("/campaigns/new/columns/", {"phone": "0", "name": "1", "time_zone": "2", "default_region": "US"})
    response = member.post("/campaigns/new/calling/", {**CALLING, "caller_ids": ["+14155550177"]})
    assert response.status_code == 200
    assert "not one of the available choices" in response.content.decode()


def test_build_review_start_and_follow_a_campaign(member, tenant_a, acme_number):
    campaign = build_draft(member)
    assert campaign.state == "draft" and campaign.custom_parameters == {"voice": "alloy", "language": "en"}
    assert campaign.weekdays == list(range(7)) and campaign.caller_ids == ["+14155550199"]
    review = member.get(f"/campaigns/{campaign.pk}/review/").content.decode()
    assert "Start campaign now" in review and "wss://agent.example.com/media" in review
    response = member.post(f"/campaigns/{campaign.pk}/review/", {"action": "start"})
    assert response["Location"] == f"/campaigns/{campaign.pk}/"
    campaign.refresh_from_db()
    assert campaign.state == "running"

    progress = member.get(f"/campaigns/{campaign.pk}/progress.json").json()
    assert progress["total"] == 3 and progress["remaining"] == 3 and progress["dialed"] == 0
    assert progress["state"] == "running" and progress["eta_seconds"] is not None

    with schema_context(tenant_a.tenant):
        first = CampaignContact.objects.filter(campaign=campaign).order_by("pk").first()
        campaign_contacts_claim([first.pk])
        record_attempt_outcome(first.pk, "answered", "CAtest1")
    progress = member.get(f"/campaigns/{campaign.pk}/progress.json").json()
    assert (progress["answered"], progress["dialed"], progress["remaining"]) == (1, 1, 2)

    assert member.post(f"/campaigns/{campaign.pk}/pause/").status_code == 302
    assert member.get(f"/campaigns/{campaign.pk}/progress.json").json()["state"] == "paused"
    assert member.post(f"/campaigns/{campaign.pk}/resume/").status_code == 302
    page = member.get(f"/campaigns/{campaign.pk}/")
    assert "Campaign resumed." in page.content.decode()
    # a transition that is not allowed is explained, not a crash
    member.post(f"/campaigns/{campaign.pk}/resume/")
    assert "Could not resume: the campaign is running" in member.get(f"/campaigns/{campaign.pk}/").content.decode()

    export = member.get(f"/campaigns/{campaign.pk}/export.csv")
    assert export["Content-Disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))
    assert rows[0][:4] == ["phone", "name", "time_zone", "state"] and len(rows) == 4
    assert ["+14155550101", "Ada", "America/Los_Angeles", "done"] == rows[1][:4]
    assert json.loads(rows[1][-1]) == {"plan": "gold", "number (column 5)": "x1"}

    member.post(f"/campaigns/{campaign.pk}/cancel/")
    campaign.refresh_from_db()
    assert campaign.state == "cancelled"
    assert "Spring promo" in member.get("/campaigns/").content.decode()


def test_test_call_without_a_carrier_is_recorded_as_failed(member, tenant_a, acme_number):
    campaign = build_draft(member)
    response = member.post(f"/campaigns/{campaign.pk}/test-call/", {"to": "+14155550123", "from_": "+14155550199"},
                           follow=True)
    html = response.content.decode()
    assert response.status_code == 200
    with schema_context(tenant_a.tenant):
        call = Call.objects.get(to_number="+14155550123")
    assert call.sid in html
    # the card comes back on reload: the call is named in the page's address
    assert response.redirect_chain[-1][0].endswith(f"?call={call.sid}")
    assert call.sid in member.get(response.redirect_chain[-1][0]).content.decode()
    status = member.get(f"/campaigns/{campaign.pk}/test-call/{call.sid}.json").json()
    assert status["status"] == "failed" and status["reason"] == "no_carrier_available"
    bad = member.post(f"/campaigns/{campaign.pk}/test-call/", {"to": "12", "from_": "+14155550199"})
    assert "must start with" in bad.content.decode()


def test_a_test_call_to_an_https_agent_endpoint_dials_it_as_wss_like_the_campaign(member, tenant_a, acme_number):
    campaign = build_draft(member)
    with schema_context(tenant_a.tenant):
        Campaign.objects.filter(pk=campaign.pk).update(stream_url="https://agent.acme.example/stream")
    member.post(f"/campaigns/{campaign.pk}/test-call/", {"to": "+14155550124", "from_": "+14155550199"})
    with schema_context(tenant_a.tenant):
        call = Call.objects.get(to_number="+14155550124")
    assert call.stream_url == "wss://agent.acme.example/stream"
    assert call.custom_parameters["test_call"] == "true" and call.campaign_id is None


def test_an_existing_list_can_be_reused_and_a_draft_edited_later(member, tenant_a, acme_number):
    first = build_draft(member)
    page = member.get("/campaigns/new/?restart=1")
    assert page.status_code == 302
    form = member.get("/campaigns/new/").content.decode()
    assert first.contact_list.name in form
    response = member.post("/campaigns/new/", {"name": "Second", "contact_list": str(first.contact_list_id)})
    assert response["Location"] == "/campaigns/new/calling/"
    # edit the first draft again: its settings come back
    assert member.get(f"/campaigns/{first.pk}/edit/")["Location"] == "/campaigns/new/calling/"
    html = member.get("/campaigns/new/calling/").content.decode()
    assert 'value="2.0"' in html or 'value="2"' in html
    member.post("/campaigns/new/calling/", {**CALLING, "cps": "3"})
    first.refresh_from_db()
    assert first.cps == 3.0


def test_another_tenants_campaign_is_not_found(member, tenant_a, tenant_b, acme_number):
    campaign = build_draft(member)
    make_user(tenant_b.tenant, "gus")
    globex = signed_in(tenant_b.domain, "gus")
    for path in (f"/campaigns/{campaign.pk}/", f"/campaigns/{campaign.pk}/progress.json",
                 f"/campaigns/{campaign.pk}/export.csv", f"/campaigns/{campaign.pk}/review/"):
        assert globex.get(path).status_code == 404, path
    assert globex.post(f"/campaigns/{campaign.pk}/cancel/").status_code == 404


# --- a scheduled start -----------------------------------------------------------------------------


def schedule(client, campaign, start_at: str, time_zone: str):
    return client.post(f"/campaigns/{campaign.pk}/review/", {"action": "schedule", "start_at": start_at,
                                                             "time_zone": time_zone})


def tomorrow_in(zone: str) -> dt.datetime:
    local = timezone.now().astimezone(zoneinfo.ZoneInfo(zone)) + dt.timedelta(days=1)
    return local.replace(second=0, microsecond=0)


def test_a_start_time_in_the_past_is_refused_next_to_the_field_and_nothing_typed_is_lost(member, acme_number):
    campaign = build_draft(member)
    review = member.get(f"/campaigns/{campaign.pk}/review/").content.decode()
    assert "Start on (date and time)" in review and "Time zone of that time" in review
    assert "data-browser-zone" in review  # ui.js puts the browser's zone in

    response = schedule(member, campaign, "2020-03-01T09:30", "Europe/Paris")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="id_start_at_error"><li>This time has passed' in html  # next to the field
    assert 'value="2020-03-01T09:30"' in html and 'value="Europe/Paris"' in html  # kept
    assert "data-browser-zone" not in html  # what was typed is not replaced by the browser's zone

    year = timezone.now().year + 1  # next spring, when the clocks in Paris skip from 02:00 to 03:00
    spring_forward = max(d for d in (dt.date(year, 3, day) for day in range(25, 32)) if d.weekday() == 6)
    skipped = schedule(member, campaign, f"{spring_forward}T02:30", "Europe/Paris").content.decode()
    assert 'id="id_start_at_error"><li>This time does not exist in Europe/Paris' in skipped

    unknown = schedule(member, campaign, tomorrow_in("UTC").strftime("%Y-%m-%dT%H:%M"), "Mars/Olympus").content.decode()
    assert "Unknown time zone" in unknown and 'value="Mars/Olympus"' in unknown
    campaign.refresh_from_db()
    assert campaign.state == "draft" and campaign.start_at is None


def test_a_scheduled_campaign_shows_when_it_starts_and_can_be_unscheduled_or_cancelled(member, tenant_a, acme_number):
    campaign = build_draft(member)
    start = tomorrow_in("Europe/Paris")
    response = schedule(member, campaign, start.strftime("%Y-%m-%dT%H:%M"), "Europe/Paris")
    assert response["Location"] == f"/campaigns/{campaign.pk}/"
    campaign.refresh_from_db()
    assert campaign.state == "scheduled" and campaign.start_at == start  # the wall-clock time in Paris

    page = member.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert f"scheduled: it starts by itself on {start:%Y-%m-%d at %H:%M} (Europe/Paris)" in page  # as typed
    assert 'id="campaign-state">Scheduled<' in page
    assert f'datetime="{campaign.start_at.isoformat()}"' in page  # shown in the browser's zone by ui.js
    assert f"{campaign.start_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" in page  # …and in UTC without script
    progress = member.get(f"/campaigns/{campaign.pk}/progress.json").json()
    assert progress["state"] == "scheduled" and progress["start_at"] == campaign.start_at.isoformat()
    assert "starts <time" in member.get("/campaigns/").content.decode()

    # Back to a draft, scheduled again, then cancelled before its time: nobody is ever called.
    member.post(f"/campaigns/{campaign.pk}/review/", {"action": "unschedule"})
    campaign.refresh_from_db()
    assert campaign.state == "draft" and campaign.start_at is None
    schedule(member, campaign, start.strftime("%Y-%m-%dT%H:%M"), "Europe/Paris")
    member.post(f"/campaigns/{campaign.pk}/cancel/")
    campaign.refresh_from_db()
    assert campaign.state == "cancelled" and campaign.started_at is None
    with schema_context(tenant_a.tenant):
        assert not CampaignContact.objects.filter(campaign=campaign).exists()


def test_a_scheduled_campaign_starts_by_itself_when_its_time_comes(member, tenant_a, acme_number, settings,
                                                                  monkeypatch, django_capture_on_commit_callbacks):
    from campaigns import tasks

    campaign = build_draft(member)
    with django_capture_on_commit_callbacks(execute=True):  # scheduling marks Acme for the dispatcher
        schedule(member, campaign, tomorrow_in("America/New_York").strftime("%Y-%m-%dT%H:%M"), "America/New_York")
    assert settings.CELERY_BEAT_SCHEDULE["dispatch-dialers"] == {
        "task": "campaigns.tasks.dispatch_dialers", "schedule": 1.0}  # beat runs it every second
    dialing = []
    monkeypatch.setattr(tasks.dial_campaign, "delay", lambda *args: dialing.append(args))

    tasks.dispatch_dialers()
    campaign.refresh_from_db()
    assert campaign.state == "scheduled" and dialing == []  # not yet

    with schema_context(tenant_a.tenant):  # its time comes
        Campaign.objects.filter(pk=campaign.pk).update(start_at=timezone.now() - dt.timedelta(seconds=1))
    tasks.dispatch_dialers()
    campaign.refresh_from_db()
    assert campaign.state == "running" and campaign.started_at is not None
    assert dialing == [(campaign.pk, 0)]  # and its dialing loop is started
    progress = member.get(f"/campaigns/{campaign.pk}/progress.json").json()
    assert progress["state"] == "running" and progress["total"] == 3
