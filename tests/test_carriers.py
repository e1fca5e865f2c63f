"""A platform admin's carriers: validated on input, passwords unreadable at rest, health from real
SIP OPTIONS pings (SIPp answering), and the inventory the gateways read kept in Redis."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client

from core import keys
from core.redis_client import get_redis
from telephony.models import Carrier, CarrierHealthEvent, Number
from telephony.services import check_carrier, publish_inventory
from tenants.models import Tenant
from tests.support import free_udp_port

pytestmark = pytest.mark.django_db
OPTIONS_SCENARIO = Path(__file__).parent / "telephony_units" / "scenarios" / "options_uas.xml"


@pytest.fixture
def sipp_options(tmp_path):
    """SIPp as a carrier that answers OPTIONS with 200."""
    port = free_udp_port()
    proc = subprocess.Popen(
        [shutil.which("sipp"), "-sf", str(OPTIONS_SCENARIO), "-i", "127.0.0.1", "-p", str(port), "-nostdin"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    yield port
    proc.terminate()
    proc.wait(5)


@pytest.mark.parametrize(
    "field, value", [("host", "bad host!"), ("host", ""), ("port", 70000), ("port", 0)]
)
def test_an_invalid_host_or_port_is_an_error_naming_the_field(field, value):
    carrier = Carrier(name="Broken", **{"host": "sip.example.net", "port": 5060, field: value})
    with pytest.raises(ValidationError) as error:
        carrier.full_clean()
    assert field in error.value.message_dict


def test_an_invalid_number_is_an_error_naming_the_field():
    with pytest.raises(ValidationError) as error:
        Number(e164="555-1234").full_clean()
    assert "e164" in error.value.message_dict


def test_carrier_password_is_encrypted_at_rest_and_never_shown_back():
    carrier = Carrier.objects.create(name="Trunky", host="127.0.0.1")
    carrier.set_password("s3cret-digest")
    carrier.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_encrypted FROM telephony_carrier WHERE id = %s", [carrier.pk])
        stored = cursor.fetchone()[0]
    assert "s3cret" not in stored
    assert Carrier.objects.get(pk=carrier.pk).as_route().password == "s3cret-digest"


def test_the_admin_form_never_renders_the_password(django_user_model):
    carrier = Carrier.objects.create(name="Trunky", host="127.0.0.1")
    carrier.set_password("s3cret-digest")
    carrier.save()
    django_user_model.objects.create_superuser("root", password="pw")
    client = Client(HTTP_HOST="localhost")
    client.post("/admin/login/", {"username": "root", "password": "pw"})
    page = client.get(f"/admin/telephony/carrier/{carrier.pk}/change/").content.decode()
    assert 'name="password"' in page
    assert "s3cret" not in page and carrier.password_encrypted not in page


def test_options_failures_mark_a_carrier_down_and_successes_bring_it_back(sipp_options, settings):
    settings.CARRIER_DOWN_AFTER, settings.CARRIER_UP_AFTER, settings.CARRIER_PING_TIMEOUT = 3, 2, 0.5
    carrier = Carrier.objects.create(name="Flaky", host="127.0.0.1", port=free_udp_port())  # nobody there

    assert [check_carrier(carrier.pk) for _ in range(3)] == [None, None, "down"]
    carrier.refresh_from_db()
    assert not carrier.healthy
    assert CarrierHealthEvent.objects.get(carrier=carrier).reason.startswith("OPTIONS failed")

    Carrier.objects.filter(pk=carrier.pk).update(port=sipp_options)  # the trunk is back
    assert [check_carrier(carrier.pk) for _ in range(2)] == [None, "up"]
    carrier.refresh_from_db()
    assert carrier.healthy and carrier.health_rtt_ms is not None
    assert [e.healthy for e in carrier.health_events.order_by("at")] == [False, True]
    assert "200" in carrier.health_events.order_by("at").last().reason


def test_inventory_in_redis_lists_carrier_addresses_and_number_routes(tenant_a):
    Carrier.objects.create(name="Local", host="127.0.0.1")
    Number.objects.create(
        e164="+14155550100", tenant=Tenant.objects.get(schema_name="acme"), inbound_stream_url="ws://agent.example/stream"
    )
    publish_inventory()
    client = get_redis()
    assert b"127.0.0.1" in client.smembers(keys.CARRIER_ADDRESSES)
    route = json.loads(client.hget(keys.NUMBER_ROUTES, "+14155550100"))
    assert route["tenant"] == "acme" and route["stream_url"] == "ws://agent.example/stream"
    # the agent's start message names the tenant's real account and the number's parameters
    assert route["account_sid"] == Tenant.objects.get(schema_name="acme").account_sid
    assert route["custom_parameters"] == {}
