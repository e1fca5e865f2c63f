"""The OpenAPI schema at /api/schema is complete and true: schemathesis sends generated requests, good
and bad, to every operation of it (the Twilio-compatible ones included) as Acme, and every answer is
one the schema promises - never a server error."""
import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.generation.modes import GenerationMode

from telephony.models import Carrier, Number
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

ACME_NUMBER = "+14155550100"
EXAMPLES_PER_OPERATION = 15
# Every answer as the schema promises it, never a server error, for good and bad requests alike.
# (Not "positive data acceptance": a request can fit the schema and still be refused for its meaning -
# a number that is not the tenant's; not "negative data rejection": unknown query parameters are
# ignored, as by most APIs.)
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_headers_conformance, checks.response_schema_conformance]


@pytest.fixture
def api_schema(tenant_a):
    Carrier.objects.create(name="Schema carrier", host="127.0.0.1", port=5099)
    Number.objects.get_or_create(e164=ACME_NUMBER, tenant=Tenant.objects.get(schema_name="acme"))
    # Requests run in the test's transaction (as with Django's test client): the handler must not
    # close the connection at each request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/schema?format=json", get_wsgi_application())
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_every_operation_answers_as_its_schema_says(api_schema, tenant_a):
    account_sid = Tenant.objects.get(schema_name="acme").account_sid
    headers = {"Authorization": f"Bearer {tenant_a.api_key}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert any(op.path.startswith("/2010-04-01/") for op in operations), "the Twilio-compatible views are in it"
    failures = {}
    for operation in operations:
        @given(case=operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def exercise(case):
            if "account_sid" in (case.path_parameters or {}):
                case.path_parameters["account_sid"] = account_sid
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, reported together
            failures[f"{operation.method.upper()} {operation.path}"] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{name}:\n{text}" for name, text in failures.items())
