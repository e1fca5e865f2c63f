"""A web process answers each HTTP request in one trip to a fixed set of request threads
(voiceplatform/sync_handler.py): a burst of Acme's API requests is served by those threads alone, and
a streamed export still reads Acme's calls in the view's thread, with Acme's schema.

The requests go through the web processes' ASGI application, in this process (daphne only carries
the bytes: tests/twilio/ and the browser tests run it)."""
import asyncio
import json
import threading

import pytest
from django.core import signals
from django_tenants.utils import schema_context

from telephony.calls.models import Call
from tests.support import asgi_request
from voiceplatform.asgi import django_asgi_app


async def ask(tenant, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    headers = [(b"host", tenant.domain.encode()), (b"authorization", f"Bearer {tenant.api_key}".encode()),
               (b"content-type", b"application/json")]
    return await asgi_request(django_asgi_app, method, path, headers, body)


@pytest.fixture
def served_on():
    """The threads request_started ran on."""
    threads = []

    def seen(**kwargs):
        threads.append(threading.get_ident())

    signals.request_started.connect(seen)
    yield threads
    signals.request_started.disconnect(seen)


def test_a_burst_of_api_requests_is_served_by_the_request_threads_alone(tenant_a, committed, served_on):
    async def burst():
        return await asyncio.gather(*(ask(tenant_a, "GET", "/api/v1/calls") for _ in range(60)))

    answers = asyncio.run(burst())

    assert [status for status, _ in answers] == [200] * 60
    assert len(served_on) == 60
    assert len(set(served_on)) <= django_asgi_app.threads._max_workers < 60


def test_a_streamed_export_reads_the_tenants_calls_in_the_views_thread(tenant_a, committed):
    with schema_context("acme"):
        call = Call.objects.create(from_number="+14155550100", to_number="+14155550177")
    try:
        status, body = asyncio.run(ask(tenant_a, "GET", "/api/v1/calls/export"))
    finally:
        with schema_context("acme"):
            Call.objects.filter(pk=call.pk).delete()

    assert status == 200, body[:500]
    header, *rows = body.decode().splitlines()
    assert header.startswith("sid,direction,from_number,to_number")
    assert any(row.startswith(f"{call.sid},") and "+14155550177" in row for row in rows)


def test_bad_json_is_a_400_through_the_handler(tenant_a, committed):
    status, body = asyncio.run(ask(tenant_a, "POST", "/api/v1/calls", b"{not json"))

    assert status == 400
    assert json.loads(body)  # the API's JSON error, not a page
