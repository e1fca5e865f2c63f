"""Every log line about a call carries its id, whichever part of the platform wrote it: one logging
configuration (settings.LOGGING, voiceplatform/logs.py) writes key=value lines with call_sid."""
import io
import logging
import re
import time

import pytest
from django_tenants.utils import schema_context

from core import keys
from core.logs import CallSidFilter
from core.redis_client import get_redis
from telephony.calls import webhooks
from telephony.calls.models import Call, WebhookDelivery
from telephony.calls.recorder import record_event
from telephony.gateway import client
from telephony.gateway import events as gw

pytestmark = pytest.mark.django_db
LINE = re.compile(r"^ts=\S+Z level=[A-Z]+ logger=(?P<logger>\S+)( call_sid=(?P<sid>\S+))? msg=.+$")


@pytest.fixture
def platform_log():
    """The lines the platform's console handler writes during the test (at DEBUG)."""
    root = logging.getLogger()
    handler = next(h for h in root.handlers if any(isinstance(f, CallSidFilter) for f in h.filters))
    buffer, level = io.StringIO(), root.level
    stream = handler.setStream(buffer)
    root.setLevel(logging.DEBUG)
    yield lambda: buffer.getvalue().splitlines()
    root.setLevel(level)
    handler.setStream(stream)


def test_a_calls_lines_carry_its_sid_from_dialing_to_recording_and_callbacks(tenant_a, platform_log):
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550199",
                                   status_callback="http://127.0.0.1:9/hook")  # nobody listens there
    r = get_redis()
    client.originate(r, {"call_id": call.sid, "from": call.from_number, "to": call.to_number, "tenant": "acme",
                         "legs": [{"uri": "sip:+14155550199@127.0.0.1:9"}]})
    for raw in r.lrange(keys.tenant_queue("", "acme"), 0, -1):  # no gateway of a later test may dial it
        if call.sid.encode() in raw:
            r.lrem(keys.tenant_queue("", "acme"), 0, raw)
    record_event(gw.make_event(call.sid, gw.INITIATED, ts=time.time(), gateway_id="gw-1"), "acme")
    with schema_context("acme"):
        assert webhooks.deliver(WebhookDelivery.objects.get(call=call).pk) == 2  # refused: retried
    logging.getLogger("gateway.media").info("call %s: stream ended: %s", call.sid, "agent_closed")
    logging.getLogger("telephony.calls").info("a line about no call")

    lines = [LINE.match(line) for line in platform_log()]
    assert all(lines), platform_log()
    sids = {m["logger"]: m["sid"] for m in lines}
    assert sids["gateway.client"] == call.sid  # queued for the gateways (API or dialer)
    assert sids["telephony.calls.recorder"] == call.sid  # its event recorded
    assert sids["telephony.calls.webhooks"] == call.sid  # its status callback failed
    assert sids["gateway.media"] == call.sid  # a gateway line naming the call
    assert sids["telephony.calls"] is None
