"""Acme's code was written for Twilio: it logs in with its account SID and auth token, or with an API
key's SID (SK…) and secret, through Twilio's own Python client pointed at the platform. The auth token
is shown to Acme's admins, rotates with a grace period, and signs what the platform sends to Acme.

Real parts: daphne serving the API, Twilio's client (its HTTP stack, its auth, its error handling).
"""
import datetime as dt

import pytest
from django.utils import timezone
from django_tenants.utils import schema_context
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tenants import auth_token
from tenants.accounts.models import ApiKey
from tenants.models import Tenant
from tests.twilio_support import ACME_NUMBER, CALLEE, STREAM_TWIML, twilio_client

pytestmark = pytest.mark.usefixtures("committed")


def place_call(client: Client):
    return client.calls.create(to=CALLEE, from_=ACME_NUMBER, twiml=STREAM_TWIML)


def test_the_account_sid_and_auth_token_log_in_as_with_twilio(acme, web):
    client = twilio_client(acme.account_sid, auth_token.current(acme), None, web)
    call = place_call(client)
    assert call.sid.startswith("CA") and call.account_sid == acme.account_sid
    assert client.calls(call.sid).fetch().to == CALLEE


def test_an_api_key_sid_and_secret_log_in_as_with_twilio(acme, tenant_a, web):
    secret = tenant_a.api_key.partition(".")[2]
    with schema_context("acme"):
        key_sid = ApiKey.objects.get(name="created with the tenant").sid
    assert key_sid.startswith("SK") and len(key_sid) == 34
    call = place_call(twilio_client(key_sid, secret, acme.account_sid, web))
    assert call.status == "queued"

    # The secret of one key does not go with the SID of another.
    with schema_context("acme"):
        other = ApiKey.objects.create(name="other", prefix="x", secret_hash="0" * 64)
    try:
        with pytest.raises(TwilioRestException) as refused:
            place_call(twilio_client(other.sid, secret, acme.account_sid, web))
        assert refused.value.status == 401
    finally:
        with schema_context("acme"):
            other.delete()


def test_a_wrong_token_is_refused_and_another_tenants_token_opens_nothing(acme, tenant_b, web):
    with pytest.raises(TwilioRestException) as refused:
        place_call(twilio_client(acme.account_sid, "0" * 32, None, web))
    assert refused.value.status == 401

    globex = Tenant.objects.get(schema_name="globex")
    with pytest.raises(TwilioRestException) as refused:
        place_call(twilio_client(acme.account_sid, auth_token.current(globex), None, web))
    assert refused.value.status == 401


def test_a_rotated_token_keeps_the_old_one_working_for_its_grace_period_only(acme, web):
    old = auth_token.current(acme)
    new = auth_token.rotate(acme)
    assert new != old and len(new) == 32
    try:
        for token in (old, new):
            assert place_call(twilio_client(acme.account_sid, token, None, web)).status == "queued"
        # Requests to Acme are signed with the new token only.
        assert auth_token.current(Tenant.objects.get(pk=acme.pk)) == new

        Tenant.objects.filter(pk=acme.pk).update(previous_auth_token_until=timezone.now() - dt.timedelta(seconds=1))
        with pytest.raises(TwilioRestException) as refused:
            place_call(twilio_client(acme.account_sid, old, None, web))
        assert refused.value.status == 401
        assert place_call(twilio_client(acme.account_sid, new, None, web)).status == "queued"
    finally:
        Tenant.objects.filter(pk=acme.pk).update(previous_auth_token_encrypted="", previous_auth_token_until=None)


def test_the_token_is_encrypted_at_rest(acme):
    assert auth_token.current(acme) not in acme.auth_token_encrypted
