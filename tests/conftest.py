"""The test run's own PostgreSQL and Redis, started before Django loads and stopped at the end.

Tests never use DATABASE_URL / REDIS_URL from the environment (they create and drop schemas): each
run gets fresh embedded servers in a temporary folder.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "platform"), str(ROOT)]

from tests.object_store import ObjectStore  # noqa: E402
from tests.support import project_env  # noqa: E402
from voiceplatform.embedded import RedisServer, start_postgres, stop_postgres  # noqa: E402

RUN_DIR = Path(tempfile.mkdtemp(prefix="vp-test-"))
os.environ["VOICEPLATFORM_VAR_DIR"] = str(RUN_DIR)
os.environ["DATABASE_URL"] = start_postgres(RUN_DIR / "postgres")
_redis = RedisServer(RUN_DIR / "redis").start()
os.environ["REDIS_URL"] = _redis.url
os.environ["DJANGO_SETTINGS_MODULE"] = "voiceplatform.settings"
# The tests' agents and webhook receivers listen on 127.0.0.1: allowed explicitly (every process of the
# run inherits it), as an operator would; tests of the guard itself narrow it with override_settings.
os.environ["OUTBOUND_ALLOW"] = "127.0.0.1"
# Recordings go to an S3-compatible server (moto) started for the run, as in a deployment with a bucket.
OBJECT_STORE = ObjectStore(RUN_DIR / "s3.log")
os.environ.update(OBJECT_STORE.env)

import django  # noqa: E402

django.setup()


def pytest_unconfigure(config):
    from django.db import connections

    connections.close_all()
    OBJECT_STORE.stop()
    _redis.stop()
    stop_postgres(RUN_DIR / "postgres")
    shutil.rmtree(RUN_DIR, ignore_errors=True)


@pytest.fixture
def server_dir():
    """A folder for a test's own PostgreSQL. Not under pytest's tmp_path: a pytest session starting
    meanwhile makes /tmp/pytest-of-<user> private again, and the server's `pgserver` user (when run
    as root) loses its way to the data dir."""
    path = Path(tempfile.mkdtemp(prefix="vp-test-server-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def object_store(recordings_bucket):
    """The run's S3-compatible server, with its recordings bucket."""
    return OBJECT_STORE


@pytest.fixture(scope="session", autouse=True)
def recordings_bucket():
    """Every test that stores a file (a recording, a voicemail message) finds the run's bucket."""
    OBJECT_STORE.make_bucket()


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker):
    """Migrate the run's private database in place (it is thrown away with the run)."""
    from django.core.management import call_command

    from tenants.services import ensure_public_tenant

    with django_db_blocker.unblock():
        call_command("migrate_schemas", shared=True, interactive=False, verbosity=0)
        ensure_public_tenant()


@pytest.fixture(autouse=True)
def fresh_placement_data():
    """A test's carriers and numbers are its own: none remembered from the test before (PLACEMENT_CACHE_S)."""
    from telephony.calls import services

    services.forget_recent_placement_data()


@pytest.fixture(autouse=True)
def back_to_public():
    """Tests switch schemas (API calls, schema_context left open by an assertion); each starts public."""
    yield
    from django.db import connection

    connection.set_schema_to_public()


@pytest.fixture
def committed(django_db_setup, django_db_blocker):
    """Database access outside a test transaction, for data that other processes must see.
    Tests using it clean up what they create."""
    with django_db_blocker.unblock():
        yield


def _make_tenant(slug):
    from tenants.services import create_tenant

    return create_tenant(slug, f"{slug}.localhost", name=slug.title())


@pytest.fixture(scope="session")
def tenant_a(django_db_setup, django_db_blocker):
    """Acme: a tenant with its schema, domain acme.localhost, an admin user and an API key."""
    with django_db_blocker.unblock():
        return _make_tenant("acme")


@pytest.fixture(scope="session")
def tenant_b(django_db_setup, django_db_blocker):
    """Globex: a second tenant, to prove Acme's data never reaches it."""
    with django_db_blocker.unblock():
        return _make_tenant("globex")


@pytest.fixture
def acme_can_call(tenant_a):
    """Acme owns +14155550100 and there is a carrier (nothing listens on it: calls are only queued)."""
    from telephony.models import Carrier, Number
    from tenants.models import Tenant

    Carrier.objects.create(name="Primary", host="127.0.0.1", port=5099, priority=1)
    Number.objects.create(e164="+14155550100", tenant=Tenant.objects.get(schema_name="acme"))
    yield
    from django.db import connection

    connection.set_schema_to_public()


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """daphne serving the platform (HTTP and WebSockets) on a free port, for one test module: its port."""
    from tests import stack

    process, port = stack.web(tmp_path_factory.mktemp("web"))
    yield port
    process.stop()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup):
    """A real Celery worker, as `make run` starts it, against this run's Redis and PostgreSQL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "voiceplatform", "worker", "--pool", "solo", "-l", "WARNING",
         "-n", f"test-{os.getpid()}@%h"],
        cwd=ROOT, env=project_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    from voiceplatform.celery import app

    for _ in range(60):
        if app.control.ping(timeout=0.5):
            break
        if proc.poll() is not None:
            raise RuntimeError("celery worker exited at start")
    yield proc
    proc.terminate()
    proc.wait(20)


@pytest.fixture
def trunks(tmp_path, tenant_a):
    """SIPp carriers and Acme's caller-ID numbers for one test (tests/campaign_support.py)."""
    from tests.campaign_support import Trunks

    made = Trunks(tmp_path)
    yield made
    made.remove()


@pytest.fixture
def campaigns_made(tenant_a):
    """Campaigns a test creates (tests/campaign_support.py); cancelled and deleted with their calls and
    contacts afterwards."""
    from django.db import connection
    from django_tenants.utils import schema_context

    from campaigns.models import Campaign
    from telephony.calls.models import Call

    made: list[Campaign] = []
    yield made
    with schema_context("acme"):
        for campaign in made:
            Campaign.objects.filter(pk=campaign.pk).update(state=Campaign.State.CANCELLED)
            Call.objects.filter(campaign_id=campaign.pk).delete()
            contact_list = campaign.contact_list
            campaign.delete()
            contact_list.delete()
    connection.set_schema_to_public()
