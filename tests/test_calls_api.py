"""A tenant's code places single calls through our REST API or, unchanged, through Twilio's: the
call is recorded, validated field by field, handed to the gateway pool, and can be hung up."""
import base64
import json

import pytest
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context

from campaigns.models import Campaign, ContactList
from core import keys
from core.recent import Recent
from core.redis_client import get_redis
from media import fallback
from telephony.calls import services
from telephony.calls.models import Call
from telephony.models import Carrier, Number
from tenants.models import Tenant

pytestmark = pytest.mark.django_db
ACME_NUMBER = "+14155550100"
CALLEE = "+14155550199"


@pytest.fixture(autouse=True)
def inventory(tenant_a):
    Carrier.objects.create(name="Primary", host="127.0.0.1", port=5099, priority=1)
    Carrier.objects.create(name="Backup", host="127.0.0.1", port=5098, priority=2)
    Number.objects.create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme"))
    get_redis().delete(keys.tenant_queue("", "acme"))
    yield
    connection.set_schema_to_public()


def queued_commands():
    return [json.loads(raw) for raw in get_redis().lrange(keys.tenant_queue("", "acme"), 0, -1)]


def v1(tenant):
    return Client(HTTP_AUTHORIZATION=f"Bearer {tenant.api_key}")


def twilio(tenant):
    secret = base64.b64encode(f"{tenant.account_sid}:{tenant.api_key}".encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {secret}")


def test_a_call_is_recorded_and_handed_to_the_gateways_with_carrier_failover_legs(
    tenant_a, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = v1(tenant_a).post("/api/v1/calls", {
            "to": CALLEE, "from": ACME_NUMBER, "stream_url": "wss://agent.acme.example/stream",
            "custom_parameters": {"lead": "42"}, "timeout": 20,
        }, content_type="application/json")
    assert response.status_code == 201, response.content
    sid = response.json()["sid"]
    assert response.json()["status"] == "queued"

    [command] = queued_commands()
    assert command["call_id"] == sid and command["tenant"] == "acme"
    assert command["to"] == CALLEE and command["from"] == ACME_NUMBER and command["ring_timeout"] == 20
    assert [leg["uri"] for leg in command["legs"]] == [
        f"sip:{CALLEE}@127.0.0.1:5099;transport=udp", f"sip:{CALLEE}@127.0.0.1:5098;transport=udp"
    ]
    assert command["stream_url"] == "wss://agent.acme.example/stream"
    assert command["custom_parameters"] == {"lead": "42"}

    fetched = v1(tenant_a).get(f"/api/v1/calls/{sid}")
    assert fetched.status_code == 200 and fetched.json()["to_number"] == CALLEE


def test_a_burst_of_api_calls_costs_the_database_little_per_call(tenant_a, django_assert_num_queries, monkeypatch):
    """Once Acme's key and the host are known (for API_AUTH_CACHE_S), and its caller ID and the carriers
    (for PLACEMENT_CACHE_S, a minute here so a slow machine does not let them lapse), a create only
    writes the call: no tenant, domain, key, number or carrier lookup, no query for legs or transfers."""
    monkeypatch.setattr(services, "_recent_numbers", Recent(60))
    monkeypatch.setattr(services, "_recent_carriers", Recent(60))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.api_key}", HTTP_HOST="localhost")
    body = {"to": CALLEE, "from": ACME_NUMBER, "stream_url": "wss://agent.acme.example/stream"}
    assert client.post("/api/v1/calls", body, content_type="application/json").status_code == 201
    connection.set_schema_to_public()

    # SET search_path (Acme's schema), the insert (no savepoint around it)
    with django_assert_num_queries(2):
        response = client.post("/api/v1/calls", body, content_type="application/json")
    assert response.status_code == 201 and response.json()["legs"] == [] and response.json()["transfers"] == []
    assert response.json()["to_number"] == CALLEE and response.json()["status"] == "queued"

    connection.set_schema_to_public()
    twilio_client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION="Basic " + base64.b64encode(
        f"{tenant_a.account_sid}:{tenant_a.api_key}".encode()).decode())
    form = {"To": CALLEE, "From": ACME_NUMBER, "Twiml": "<Response><Hangup/></Response>"}
    assert twilio_client.post(f"/2010-04-01/Accounts/{tenant_a.account_sid}/Calls.json", form).status_code == 201
    connection.set_schema_to_public()
    with django_assert_num_queries(2):
        response = twilio_client.post(f"/2010-04-01/Accounts/{tenant_a.account_sid}/Calls.json", form)
    assert response.status_code == 201 and response.json()["to"] == CALLEE


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"to": "12"}, "to"),
        ({"from": "+14155550111"}, "from"),  # a valid number Acme does not own
        ({"stream_url": "https://not-a-socket.example"}, "stream_url"),
        ({"status_callback": "ftp://x.example"}, "status_callback"),
        ({"timeout": 1}, "timeout"),
        ({"stream_url": "wss://agent.acme.example/stream", "recording_status_callback": "http://127.0.0.1:9/rec"},
         "recording_status_callback"),  # not recorded
        ({"stream_url": "wss://agent.acme.example/stream", "record": True,
          "recording_status_callback": "http://127.0.0.1:9/rec", "recording_status_callback_event": ["paused"]},
         "recording_status_callback_event"),
        ({"stream_url": "wss://agent.acme.example/stream", "recording_announcement": "This call is recorded."},
         "recording_announcement"),  # not recorded
    ],
)
def test_bad_requests_are_400_naming_the_field_and_nothing_is_created(tenant_a, changes, field):
    body = {"to": CALLEE, "from": ACME_NUMBER, **changes}
    response = v1(tenant_a).post("/api/v1/calls", body, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    with schema_context("acme"):
        assert not Call.objects.exists()
    assert queued_commands() == []


def test_a_recorded_call_carries_its_announcement_and_recording_callback(tenant_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = v1(tenant_a).post("/api/v1/calls", {
            "to": CALLEE, "from": ACME_NUMBER, "stream_url": "wss://agent.acme.example/stream", "record": True,
            "recording_announcement": "This call is recorded.", "recording_status_callback": "http://127.0.0.1:9/rec",
            "recording_status_callback_method": "GET", "recording_status_callback_event": ["absent", "completed"],
        }, content_type="application/json")
    assert response.status_code == 201, response.content
    [command] = queued_commands()
    assert command["record"] is True
    assert get_redis().get(command["recording_announcement_key"]) == fallback.render("This call is recorded.")
    with schema_context("acme"):
        assert Call.objects.get(sid=response.json()["sid"]).recording_status_callback == {
            "url": "http://127.0.0.1:9/rec", "method": "GET", "events": ["completed", "absent"]}


def test_without_a_usable_carrier_the_call_is_recorded_as_failed(tenant_a):
    Carrier.objects.update(healthy=False)
    response = v1(tenant_a).post("/api/v1/calls", {"to": CALLEE, "from": ACME_NUMBER},
                                 content_type="application/json")
    assert response.status_code == 201
    assert response.json()["status"] == "failed" and response.json()["reason"] == "no_carrier_available"


def test_another_tenants_call_is_a_404(tenant_a, tenant_b):
    with schema_context("acme"):
        call = Call.objects.create(from_number=ACME_NUMBER, to_number=CALLEE)
    assert v1(tenant_b).get(f"/api/v1/calls/{call.sid}").status_code == 404
    assert v1(tenant_b).post(f"/api/v1/calls/{call.sid}/hangup").status_code == 404
    url = f"/2010-04-01/Accounts/{tenant_b.account_sid}/Calls/{call.sid}.json"
    assert twilio(tenant_b).get(url).status_code == 404
    url = f"/2010-04-01/Accounts/{tenant_a.account_sid}/Calls/{call.sid}.json"
    assert twilio(tenant_b).get(url).status_code == 404


def test_records_filter_and_export_as_csv(tenant_a):
    with schema_context("acme"):
        Call.objects.create(from_number=ACME_NUMBER, to_number=CALLEE, status="busy", outcome="busy")
        Call.objects.create(from_number=ACME_NUMBER, to_number="+14155550198", status="completed",
                            outcome="answered")
    busy = v1(tenant_a).get("/api/v1/calls?status=busy").json()["results"]
    assert [row["to_number"] for row in busy] == [CALLEE]
    export = v1(tenant_a).get("/api/v1/calls/export?outcome=answered")
    lines = b"".join(export.streaming_content).decode().splitlines()
    assert lines[0].startswith("sid,direction,from_number,to_number,status,outcome")
    assert len(lines) == 2 and "+14155550198" in lines[1]


def test_records_filter_by_campaign_and_a_bad_campaign_id_is_a_400(tenant_a):
    with schema_context("acme"):
        spring = Campaign.objects.create(name="Spring", contact_list=ContactList.objects.create(name="Leads"),
                                         caller_ids=[ACME_NUMBER], stream_url="wss://agent.acme.example/")
        Call.objects.create(from_number=ACME_NUMBER, to_number=CALLEE, campaign_id=spring.pk)
        Call.objects.create(from_number=ACME_NUMBER, to_number="+14155550198")

    listed = v1(tenant_a).get(f"/api/v1/calls?campaign={spring.pk}").json()["results"]
    assert [row["to_number"] for row in listed] == [CALLEE]
    export = b"".join(v1(tenant_a).get(f"/api/v1/calls/export?campaign={spring.pk}").streaming_content)
    assert len(export.decode().splitlines()) == 2 and CALLEE in export.decode()
    response = v1(tenant_a).get("/api/v1/calls?campaign=spring")
    assert response.status_code == 400 and "campaign" in response.json()


class TestTwilioCompatibleApi:
    def url(self, tenant, sid=None):
        base = f"/2010-04-01/Accounts/{tenant.account_sid}/Calls"
        return f"{base}/{sid}.json" if sid else f"{base}.json"

    def test_create_with_twiml_stream_fetch_and_hang_up(self, tenant_a, django_capture_on_commit_callbacks):
        twiml = ('<Response><Connect><Stream url="wss://agent.acme.example/twilio">'
                 '<Parameter name="campaign" value="spring"/></Stream></Connect></Response>')
        with django_capture_on_commit_callbacks(execute=True):
            created = twilio(tenant_a).post(self.url(tenant_a), {"To": CALLEE, "From": ACME_NUMBER, "Twiml": twiml})
        assert created.status_code == 201, created.content
        resource = created.json()
        assert resource["sid"].startswith("CA") and resource["account_sid"] == tenant_a.account_sid
        assert resource["status"] == "queued" and resource["direction"] == "outbound-api"
        [command] = queued_commands()
        assert command["stream_url"] == "wss://agent.acme.example/twilio"
        assert command["custom_parameters"] == {"campaign": "spring"}

        fetched = twilio(tenant_a).get(self.url(tenant_a, resource["sid"]))
        assert fetched.status_code == 200 and fetched.json()["to"] == CALLEE

        hung_up = twilio(tenant_a).post(self.url(tenant_a, resource["sid"]), {"Status": "completed"})
        assert hung_up.status_code == 200
        # Not yet taken by a gateway: the gateway that takes it ends it at once.
        assert get_redis().hget(keys.call_key(resource["sid"]), "hangup_requested") == b"1"

    def test_send_digits_and_record_go_with_the_call(self, tenant_a, django_capture_on_commit_callbacks):
        twiml = '<Response><Connect><Stream url="wss://agent.acme.example/twilio"/></Connect></Response>'
        with django_capture_on_commit_callbacks(execute=True):
            created = twilio(tenant_a).post(self.url(tenant_a), {
                "To": CALLEE, "From": ACME_NUMBER, "Twiml": twiml, "SendDigits": "1w23#", "Record": "true"})
        assert created.status_code == 201, created.content
        [command] = queued_commands()
        assert command["send_digits"] == "1w23#" and command["record"] is True
        refused = twilio(tenant_a).post(self.url(tenant_a), {
            "To": CALLEE, "From": ACME_NUMBER, "Twiml": twiml, "SendDigits": "1-2"})
        assert refused.status_code == 400 and "keys are 0-9 * # A-D and w" in refused.json()["message"], refused.content

    def test_an_unsupported_verb_is_a_400_naming_it(self, tenant_a):
        response = twilio(tenant_a).post(self.url(tenant_a), {
            "To": CALLEE, "From": ACME_NUMBER, "Twiml": "<Response><Gather/></Response>"
        })
        assert response.status_code == 400
        assert "<Gather>" in response.json()["message"]
        assert queued_commands() == []

    def test_a_caller_id_not_owned_is_refused_twilio_style(self, tenant_a):
        response = twilio(tenant_a).post(self.url(tenant_a), {
            "To": CALLEE, "From": "+14155550111", "Twiml": "<Response><Hangup/></Response>"
        })
        assert response.status_code == 400 and response.json()["code"] == 21212
