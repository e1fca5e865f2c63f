"""The calls log and the call page: an operator finds a call by its number or sid, narrows the log
by outcome, carrier and day, sorts it, exports what is shown, and reads what happened to a call that
failed over from one carrier to the next."""
import csv
import datetime as dt
import io

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context

from tests.ui_support import make_user, signed_in

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - dt.timedelta(hours=1)


@pytest.fixture
def calls(tenant_a):
    """Three calls of Acme: one failed over from Trunk A (503) to Trunk B and was answered, one busy,
    one from yesterday."""
    from telephony.calls.models import Call, CallLeg, WebhookDelivery

    with schema_context(tenant_a.tenant):
        Call.objects.all().delete()
        answered = Call.objects.create(
            from_number="+14155550100", to_number="+14155550177", status="completed", outcome="answered",
            carrier_name="Trunk B", hangup_by="callee", started_at=T0, answered_at=T0 + dt.timedelta(seconds=3),
            ended_at=T0 + dt.timedelta(seconds=33), duration_s=30.0, setup_ms=1004, ai_connect_ms=120, jitter_ms=2.5,
            mos=4.3, ai_response_ms=640, ai_response_turns=3, status_callback="https://hooks.example/status")
        CallLeg.objects.create(call=answered, attempt=1, carrier_name="Trunk A", sip_code=503,
                               reason="Service Unavailable", failed_over=True, started_at=T0,
                               ended_at=T0 + dt.timedelta(milliseconds=200))
        CallLeg.objects.create(call=answered, attempt=2, carrier_name="Trunk B", sip_code=200, started_at=T0,
                               ringing_at=T0 + dt.timedelta(seconds=1), answered_at=T0 + dt.timedelta(seconds=3),
                               ended_at=T0 + dt.timedelta(seconds=33))
        WebhookDelivery.objects.create(call=answered, event="completed", url="https://hooks.example/status",
                                       payload={"CallSid": answered.sid, "CallStatus": "completed"}, attempts=5,
                                       gave_up_at=T0, error="HTTP 500", status_code=500)
        busy = Call.objects.create(from_number="+14155550100", to_number="+14155550188", status="busy",
                                   outcome="busy", carrier_name="Trunk A", sip_code=486, duration_s=0)
        old = Call.objects.create(from_number="+14155550100", to_number="+14155550199", status="completed",
                                  outcome="answered", carrier_name="Trunk A", duration_s=90.0)
        Call.objects.filter(pk=old.pk).update(created_at=T0 - dt.timedelta(days=1))
        Call.objects.filter(pk=answered.pk).update(created_at=T0 - dt.timedelta(milliseconds=50))
    yield {"answered": answered, "busy": busy, "old": old}
    with schema_context(tenant_a.tenant):  # requests to other hosts moved the connection: enter again
        Call.objects.all().delete()


@pytest.fixture
def member(tenant_a):
    make_user(tenant_a.tenant, "mia")
    return signed_in(tenant_a.domain, "mia")


def _sids(page) -> list[str]:
    return [call.sid for call in page.context["page"]]


def test_an_operator_finds_a_call_by_number_and_by_sid(member, calls):
    answered = calls["answered"]
    assert _sids(member.get("/calls/", {"q": "555 0177"})) == [answered.sid]
    assert _sids(member.get("/calls/", {"q": answered.sid[:12]})) == [answered.sid]
    html = member.get("/calls/", {"q": "+14155550177"}).content.decode()
    assert f'href="/calls/{answered.sid}/"' in html


def test_the_log_filters_by_outcome_carrier_and_day_and_sorts(member, calls):
    assert set(_sids(member.get("/calls/", {"outcome": "answered"}))) == {calls["answered"].sid, calls["old"].sid}
    assert _sids(member.get("/calls/", {"carrier": "Trunk A", "outcome": "busy"})) == [calls["busy"].sid]
    today = timezone.now().date().isoformat()
    assert calls["old"].sid not in _sids(member.get("/calls/", {"from": today}))
    assert _sids(member.get("/calls/", {"sort": "-duration"}))[0] == calls["old"].sid
    assert _sids(member.get("/calls/", {"sort": "duration"}))[0] == calls["busy"].sid
    assert member.get("/calls/", {"from": "yesterday", "campaign": "x", "sort": "nope"}).status_code == 200


def test_the_export_holds_exactly_the_calls_shown(member, calls):
    response = member.get("/calls/export.csv", {"outcome": "answered", "sort": "-duration"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert [r["sid"] for r in rows] == [calls["old"].sid, calls["answered"].sid]
    assert rows[1]["carrier_name"] == "Trunk B" and rows[1]["mos"] == "4.3"


def test_the_call_page_tells_what_happened_to_a_failover_call(member, calls):
    answered = calls["answered"]
    page = member.get(f"/calls/{answered.sid}/")
    html = page.content.decode()
    steps = [(s.what, s.detail) for s in page.context["timeline"]]
    assert steps[0][0] == "queued"
    assert ("leg 1: ended", "SIP 503 Service Unavailable · failed over to the next carrier") in steps
    assert [w for w, _ in steps].index("leg 2: answered") < [w for w, _ in steps].index("agent stream connected")
    assert steps[-1] == ("ended", "hung up by the callee, answered")
    assert "Trunk A" in html and "Trunk B" in html and "640 ms" in html and "CallStatus=completed" in html
    assert "Send again" in html and "Hang up" not in html  # it has ended
    assert member.get("/calls/CA0000/").status_code == 404


def test_the_call_page_shows_the_answering_machine_result_and_plays_the_recording(member, calls, tenant_a):
    from django.core.files.base import ContentFile

    from telephony.calls.models import Call, Recording

    answered = calls["answered"]
    with schema_context(tenant_a.tenant):
        Call.objects.filter(pk=answered.pk).update(answered_by="machine_end_beep", amd_ms=2300)
        recording = Recording(call=answered, duration_s=30.0)
        recording.file.save(f"{recording.sid}.wav", ContentFile(b"RIFF....WAVE"), save=True)
    try:
        page = member.get(f"/calls/{answered.sid}/")
        step = next(s for s in page.context["timeline"] if s.what == "answering-machine detection")
        assert step.detail == "an answering machine (after the beep) after 2300 ms"
        assert step.at == T0 + dt.timedelta(seconds=3, milliseconds=2300)
        assert f'<audio controls preload="none" src="/calls/{answered.sid}/recording.wav"' in page.content.decode()
        wav = member.get(f"/calls/{answered.sid}/recording.wav")
        assert wav["Content-Type"] == "audio/wav" and b"".join(wav.streaming_content) == b"RIFF....WAVE"
        assert member.get(f"/calls/{calls['busy'].sid}/recording.wav").status_code == 404
    finally:
        with schema_context(tenant_a.tenant):
            recording.file.delete(save=False)


def test_the_call_page_shows_a_transfer_leg(member, calls, tenant_a):
    from telephony.calls.models import Transfer

    answered = calls["answered"]
    with schema_context(tenant_a.tenant):
        transfer = Transfer.objects.create(call=answered, to="+14155550190", caller_id="+14155550100", mode="warm",
                                           status="completed", outcome="answered", carrier_name="Trunk B",
                                           answered_at=T0 + dt.timedelta(seconds=20),
                                           ended_at=T0 + dt.timedelta(seconds=33), duration_s=13.0)
        Transfer.objects.filter(pk=transfer.pk).update(created_at=T0 + dt.timedelta(seconds=15))
    page = member.get(f"/calls/{answered.sid}/")
    steps = [(s.what, s.detail) for s in page.context["timeline"]]
    assert ("transfer 1: dialing +14155550190", "warm transfer, caller ID +14155550100") in steps
    assert ("transfer 1: answered", "Trunk B") in steps and ("transfer 1: ended", "answered") in steps
    assert [w for w, _ in steps].index("transfer 1: answered") < [w for w, _ in steps].index("ended")
    assert 'id="transfers"' in page.content.decode() and "13.0 s" in page.content.decode()


def test_a_member_sends_a_webhook_again(member, calls, tenant_a, django_capture_on_commit_callbacks):
    from telephony.calls.models import WebhookDelivery

    answered = calls["answered"]
    with schema_context(tenant_a.tenant):
        delivery = WebhookDelivery.objects.get(call=answered)
    with django_capture_on_commit_callbacks() as queued:
        response = member.post(f"/calls/{answered.sid}/webhooks/{delivery.pk}/resend/")
    assert response.status_code == 302 and len(queued) == 1
    with schema_context(tenant_a.tenant):
        delivery.refresh_from_db()
    assert delivery.attempts == 0 and delivery.gave_up_at is None and delivery.error == ""


def test_a_platform_admin_finds_any_tenants_call_and_reads_it(tenant_b, calls, tenant_a):
    from telephony.calls.models import Call

    with schema_context(tenant_b.tenant):
        Call.objects.all().delete()
        globex = Call.objects.create(from_number="+14155550100", to_number="+14155550177", status="busy",
                                     outcome="busy", duration_s=0)
    try:
        make_user("public", "root", staff=True, superuser=True)
        root = signed_in("localhost", "root")
        page = root.get("/platform/calls/", {"q": "0177"})
        found = {(c.schema, c.sid) for c in page.context["calls"]}
        assert found == {(tenant_a.tenant, calls["answered"].sid), (tenant_b.tenant, globex.sid)}
        assert page.context["page"].paginator.count == 2
        only_acme = root.get("/platform/calls/", {"q": "0177", "tenant": tenant_a.tenant}).context["calls"]
        assert [c.sid for c in only_acme] == [calls["answered"].sid]
        newest_first = [c.sid for c in root.get("/platform/calls/", {"sort": "-duration"}).context["calls"]]
        assert newest_first[0] == calls["old"].sid
        detail = root.get(f"/platform/calls/{tenant_a.tenant}/{calls['answered'].sid}/")
        html = detail.content.decode()
        assert detail.status_code == 200 and "Trunk A" in html and "Send again" not in html
        assert root.get(f"/platform/calls/{tenant_b.tenant}/{calls['answered'].sid}/").status_code == 404
        assert root.get(f"/platform/calls/public/{calls['answered'].sid}/").status_code == 404
    finally:
        with schema_context(tenant_b.tenant):
            Call.objects.all().delete()
