"""An operator reads what answered Acme's calls: the call page and the calls export say who answered
(a person or a voicemail greeting), how soon it was known and why."""
import csv
import io

import pytest
from django_tenants.utils import schema_context

from tests.ui_support import make_user, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def voicemail_call(tenant_a):
    from telephony.calls.models import Call

    with schema_context(tenant_a.tenant):
        call = Call.objects.create(
            from_number="+14155550100", to_number="+14155550177", status="completed", outcome="answered",
            reason="voicemail_left", duration_s=21.0, answered_by="machine_end_beep", amd_ms=7240,
            amd_evidence={"cause": "beep after the greeting", "greeting_ms": 5200})
    yield call
    with schema_context(tenant_a.tenant):
        Call.objects.filter(pk=call.pk).delete()


def test_the_call_page_and_the_export_say_a_machine_answered_and_when_it_was_known(tenant_a, voicemail_call):
    make_user(tenant_a.tenant, "mia")
    mia = signed_in(tenant_a.domain, "mia")
    html = mia.get(f"/calls/{voicemail_call.sid}/").content.decode()
    assert "machine_end_beep · decided in 7240 ms · beep after the greeting" in html
    response = mia.get("/calls/export.csv", {"q": voicemail_call.sid})
    (row,) = csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig")))
    assert (row["answered_by"], row["amd_ms"], row["reason"]) == ("machine_end_beep", "7240", "voicemail_left")
