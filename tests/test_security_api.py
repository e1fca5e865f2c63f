"""The public surface an outsider can reach: API clients never see a debug page, sign-ins and API keys
cannot be guessed at speed, weak passwords are refused, every bad input is a 4xx that says what is wrong,
and exports are safe to open in a spreadsheet."""
import base64
import csv
import io
import json
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client, override_settings
from django_tenants.utils import schema_context

from campaigns.models import Campaign, Contact, ContactList
from telephony.calls.models import Call
from tests.ui_support import make_user, signed_in

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("acme_can_call")]
ACME_NUMBER = "+14155550100"
CALLEE = "+14155550199"
HANGUP = "<Response><Hangup/></Response>"


def v1(tenant, **extra):
    return Client(HTTP_AUTHORIZATION=f"Bearer {tenant.api_key}", **extra)


def twilio_post(tenant, data, content_type=None):
    secret = base64.b64encode(f"{tenant.account_sid}:{tenant.api_key}".encode()).decode()
    url = f"/2010-04-01/Accounts/{tenant.account_sid}/Calls.json"
    client = Client(HTTP_AUTHORIZATION=f"Basic {secret}")
    if content_type:
        return client.post(url, json.dumps(data), content_type=content_type)
    return client.post(url, data)


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.urls("tests.security_urls")
@override_settings(DEBUG=True)
def test_api_clients_never_get_a_debug_page_even_with_debug_on(tenant_a):
    client = Client(raise_request_exception=False)
    crashed = client.get("/api/v1/broken")
    assert crashed.status_code == 500 and crashed["Content-Type"] == "application/json"
    assert crashed.json() == {"detail": "Internal Server Error", "status": 500}
    assert b"SECRET" not in crashed.content and b"Traceback" not in crashed.content
    missing = client.get("/api/v1/no-such-thing")
    assert missing.status_code == 404 and missing.json()["status"] == 404
    twilio_missing = client.get("/2010-04-01/Nope.json")
    assert twilio_missing.status_code == 404 and twilio_missing["Content-Type"] == "application/json"


# --- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields, says", [
    ({"Twiml": HANGUP, "TimeLimit": "abc"}, "TimeLimit must be a whole number"),
    ({"Twiml": HANGUP, "TimeLimit": "-5"}, "TimeLimit must be from 1 to 14400"),
    ({"Twiml": HANGUP, "TimeLimit": "9" * 40}, "TimeLimit must be from 1 to 14400"),
    ({"Twiml": HANGUP, "Timeout": "soon"}, "Timeout must be a whole number"),
    ({"Twiml": '<Response><Connect><Stream url="wss://a.example/' + "x" * 600 + '"/></Connect></Response>'},
     "at most 500 characters"),
    ({"Twiml": '<Response><Pause length="99999999999999999999"/></Response>'}, "<Pause length>"),
])
def test_bad_twilio_form_input_is_a_400_that_says_what_is_wrong(tenant_a, fields, says):
    response = twilio_post(tenant_a, {"To": CALLEE, "From": ACME_NUMBER, **fields})
    assert response.status_code == 400 and says in response.json()["message"]


@pytest.mark.parametrize("body, says", [
    ({"Twiml": {"Response": "Hangup"}}, "Twiml must be a string"),
    ({"Twiml": HANGUP, "To": ["+1", "+2"]}, "To must be a string"),
    ({"Url": 42}, "Url must be a string"),
])
def test_bad_twilio_json_input_is_a_400_too(tenant_a, body, says):
    response = twilio_post(tenant_a, {"To": CALLEE, "From": ACME_NUMBER, **body}, "application/json")
    assert response.status_code == 400 and says in response.json()["message"]


def test_a_deeply_nested_json_body_is_a_400(tenant_a):
    deep = '{"to": ' + "[" * 10000 + "]" * 10000 + "}"
    response = v1(tenant_a).post("/api/v1/calls", deep, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


@pytest.mark.parametrize("query, field", [
    ("limit=99999999999999999999999", "limit"), ("offset=99999999999999999999999", "offset"),
    ("limit=abc", "limit"), ("offset=-1", "offset"),
])
def test_page_bounds_out_of_range_are_a_400(tenant_a, query, field):
    response = v1(tenant_a).get(f"/api/v1/calls?{query}")
    assert response.status_code == 400 and field in response.json()


@pytest.mark.parametrize("parameters, says", [
    ({"notes": "x" * 220_000}, "500 characters"),
    ({f"p{i}": "v" for i in range(51)}, "at most 50 parameters"),
])
def test_custom_parameters_are_limited_in_size_and_count(tenant_a, parameters, says):
    response = v1(tenant_a).post("/api/v1/calls", {"to": CALLEE, "from": ACME_NUMBER,
                                                   "stream_url": "wss://agent.acme.example/",
                                                   "custom_parameters": parameters},
                                 content_type="application/json")
    assert response.status_code == 400 and says in response.json()["custom_parameters"][0]
    with schema_context("acme"):
        assert not Call.objects.exists()


def test_campaign_parameters_are_limited_the_same_way(tenant_a):
    deep: dict = {}
    for _ in range(900):
        deep = {"d": deep}
    with schema_context("acme"):
        for parameters, says in (({"notes": "x" * 600}, "500 characters"), ({"deep": deep}, "text or a number")):
            with pytest.raises(ValidationError) as refused:
                Campaign(name="x", stream_url="wss://agent.acme.example/", custom_parameters=parameters).clean()
            assert says in refused.value.message_dict["custom_parameters"][0]


def test_twiml_parameters_are_limited_the_same_way(tenant_a):
    twiml = ('<Response><Connect><Stream url="wss://agent.acme.example/"><Parameter name="notes" value="'
             + "x" * 600 + '"/></Stream></Connect></Response>')
    response = twilio_post(tenant_a, {"To": CALLEE, "From": ACME_NUMBER, "Twiml": twiml})
    assert response.status_code == 400 and "500 characters" in response.json()["message"]


# --- throttling and passwords ------------------------------------------------------------------------------


def sign_in(host, username, password, address):
    return Client(HTTP_HOST=host, REMOTE_ADDR=address).post(
        "/accounts/login/", {"username": username, "password": password})


def test_repeated_wrong_passwords_lock_the_account_even_for_the_right_one(tenant_a, settings):
    victim = f"ops-{uuid.uuid4().hex[:8]}"
    make_user(tenant_a.tenant, victim)
    answers = [sign_in(tenant_a.domain, victim, "guess", f"10.77.{attempt}.1").status_code
               for attempt in range(settings.AXES_FAILURE_LIMIT)]  # a new address each time: the account counts
    assert answers == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]  # the form again, then locked
    locked = sign_in(tenant_a.domain, victim, "ui-test-pass-1", "10.77.99.1")
    assert locked.status_code == 429
    # The same name in another tenant is another account.
    make_user("globex", victim)
    assert sign_in("globex.localhost", victim, "ui-test-pass-1", "10.77.99.2").status_code == 302


def test_an_address_guessing_at_many_accounts_is_locked_out(tenant_a, settings):
    address = f"10.88.{uuid.uuid4().int % 250}.7"
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        sign_in(tenant_a.domain, f"nobody-{attempt}-{uuid.uuid4().hex[:6]}", "guess", address)
    make_user(tenant_a.tenant, "ada")
    assert sign_in(tenant_a.domain, "ada", "ui-test-pass-1", address).status_code == 429
    assert signed_in(tenant_a.domain, "ada")  # from elsewhere Ada still signs in


@override_settings(API_KEY_FAILURE_LIMIT=5)
def test_an_address_sending_wrong_api_keys_is_throttled(tenant_a):
    address = f"10.99.{uuid.uuid4().int % 250}.3"
    for _ in range(5):
        wrong = Client(HTTP_AUTHORIZATION=f"Bearer {tenant_a.account_sid}.guess{uuid.uuid4().hex}",
                       REMOTE_ADDR=address)
        assert wrong.get("/api/v1/calls").status_code == 401
    throttled = v1(tenant_a, REMOTE_ADDR=address).get("/api/v1/calls")
    assert throttled.status_code == 429 and "Too many failed API key attempts" in throttled.json()["detail"]
    assert v1(tenant_a, REMOTE_ADDR="10.99.251.4").get("/api/v1/calls").status_code == 200


@pytest.mark.parametrize("password", ["12345678", "password1", "admin"])
def test_weak_passwords_are_refused(password):
    user = get_user_model()(username="admin")
    with pytest.raises(ValidationError):
        validate_password(password, user)


# --- exports ---------------------------------------------------------------------------------------------


FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\tline", "\rline"]


def test_call_exports_escape_formula_cells(tenant_a):
    with schema_context("acme"):
        for reason in FORMULAS:
            Call.objects.create(from_number=ACME_NUMBER, to_number=CALLEE, status="failed", reason=reason)
    export = v1(tenant_a).get("/api/v1/calls/export")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert sorted(row["reason"] for row in rows) == sorted("'" + formula for formula in FORMULAS)
    assert {row["to_number"] for row in rows} == {CALLEE}  # phone numbers stay numbers


def test_campaign_exports_escape_formula_cells(tenant_a):
    with schema_context("acme"):
        contacts = ContactList.objects.create(name="Leads")
        Contact.objects.create(contact_list=contacts, phone="+14155550123", name='=HYPERLINK("http://x","y")')
        campaign = Campaign.objects.create(name="Export", contact_list=contacts, caller_ids=[ACME_NUMBER],
                                           stream_url="wss://agent.acme.example/")
    make_user(tenant_a.tenant, "exporter")
    export = signed_in(tenant_a.domain, "exporter").get(f"/campaigns/{campaign.pk}/export.csv")
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode("utf-8-sig"))))
    assert rows[1][:2] == ["+14155550123", "'=HYPERLINK(\"http://x\",\"y\")"]


def test_a_twilio_body_that_is_not_named_parameters_is_a_400(tenant_a):
    response = twilio_post(tenant_a, ["To", CALLEE], "application/json")
    assert response.status_code == 400 and "named parameters" in response.json()["message"]
    assert response.json()["code"] == 20001  # Twilio's error body
