"""End-to-end browser tests: Debian's chromium driven by Playwright against daphne serving the
platform on a free port. Host names *.localhost reach it (chromium resolves them to loopback), so a
tenant's pages are at http://<tenant>.localhost:<port>/ and the platform's at http://localhost:<port>/.

The tests get their own tenant (created here, dropped at the end) so nothing they commit can meet
the other tests' data; public-schema rows they make (carriers, numbers, users) are removed too.
`voice_stack` starts the call path as `make run` does (gateway pool, recorder, Celery worker and beat,
the demo AI agent) with SIPp as the carrier, so a campaign started in the browser is really dialed.
Screenshots go to tests/artifacts/ui/, the processes' logs to tests/artifacts/ui/logs/.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ROOT, project_env

ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOP = "uishop"
BROWSER_ZONE = "Europe/Paris"  # the browser's time zone (the server's is UTC)


def pytest_collection_modifyitems(config, items):
    # `make test` installs Debian's chromium; a missing browser is an error, never a skipped test.
    if not Path(CHROMIUM).exists():
        raise pytest.UsageError(f"{CHROMIUM} is missing: apt-get install chromium (make test does this as root)")


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def async_unsafe_allowed():
    """Playwright's sync API runs an event loop in this thread between our calls; the ORM calls the
    tests make meanwhile are ordinary blocking calls, so Django's async-context guard is lifted."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def ui_server(django_db_setup):
    """daphne serving the platform, as `make run` starts it, against this run's database and Redis."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_tcp_port()
    log = open(ARTIFACTS / "daphne.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "voiceplatform.asgi:application"],
        cwd=ROOT, env=project_env(DEBUG="false"), stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2)
            break
        except urllib.error.HTTPError:
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"daphne did not start: see {ARTIFACTS / 'daphne.log'}") from None
            time.sleep(0.2)
    yield port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def shop(django_db_setup, django_db_blocker):
    """A tenant of the browser tests' own, with an admin, a member and a caller-ID number."""
    from django.contrib.auth import get_user_model
    from django_tenants.utils import schema_context

    from telephony.models import Number
    from tenants.models import Tenant
    from tenants.services import create_tenant, drop_tenant

    with django_db_blocker.unblock():
        if Tenant.objects.filter(schema_name=SHOP).exists():
            drop_tenant(SHOP)
        credentials = create_tenant(SHOP, f"{SHOP}.localhost", name="UI Shop")
        with schema_context(SHOP):
            get_user_model().objects.create_user("member", password="member-pass-1")
        number = Number.objects.create(e164="+14155550150", tenant=Tenant.objects.get(schema_name=SHOP))
    yield credentials
    with django_db_blocker.unblock():
        Number.objects.filter(pk=number.pk).delete()
        if Tenant.objects.filter(schema_name=SHOP).exists():
            drop_tenant(SHOP)


@pytest.fixture(scope="module")
def platform_admin(django_db_setup, django_db_blocker):
    from django.contrib.auth import get_user_model

    with django_db_blocker.unblock():
        get_user_model().objects.filter(username="uiroot").delete()
        user = get_user_model().objects.create_superuser("uiroot", password="root-pass-1")
    yield ("uiroot", "root-pass-1")
    with django_db_blocker.unblock():
        get_user_model().objects.filter(pk=user.pk).delete()


@pytest.fixture(scope="module")
def browser(async_unsafe_allowed):
    """Module-scoped: Playwright's sync API keeps an event loop running in this thread until it
    stops, which other tests' asyncio.run() must not meet."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True,
                                  timezone_id=BROWSER_ZONE)
    context.set_default_timeout(15000)
    # A page's load includes parsing plotly.js on the dashboards: 15 s once ran out while this suite
    # shared 2 cores with the cluster, chaos and gateway suites (`make test`), back when they loaded the
    # full bundle (4.8 MB); the basic one they load now is 1.2 MB. The margin stays.
    context.set_default_navigation_timeout(30000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        page.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@pytest.fixture(scope="module")
def sipp_options_port():
    """SIPp answering SIP OPTIONS with 200: a carrier that is up."""
    from tests.support import free_udp_port

    sipp = shutil.which("sipp")
    if not sipp:
        yield None
        return
    port = free_udp_port()
    scenario = ROOT / "tests" / "telephony_units" / "scenarios" / "options_uas.xml"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sipp, "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(port), "-nostdin"],
                            cwd=ARTIFACTS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield port
    proc.terminate()
    proc.wait(5)


@dataclass
class VoiceStack:
    agent_url: str  # the demo AI agent's WebSocket, for a campaign's AI endpoint
    processes: list

    def tails(self, chars: int = 1500) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail(chars)}" for p in self.processes)


def wait_for_tcp(port: int, process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{process.name} did not listen on {port}:\n{process.tail()}") from None
            time.sleep(0.1)


@pytest.fixture(scope="module")
def voice_stack(django_db_setup, django_db_blocker):
    """The call path of `make run` against this run's database and Redis: SIPp as the only carrier
    (answers every call, hangs up after 2 s), the demo AI agent, two gateway processes, the call
    recorder, a Celery worker and beat (beat's carrier OPTIONS checks are off: SIPp's call scenario
    does not answer OPTIONS)."""
    from telephony.models import Carrier
    from tests import stack

    logs = ARTIFACTS / "logs"
    shutil.rmtree(logs, ignore_errors=True)  # the last run's
    logs.mkdir(parents=True)
    sipp, sipp_port = stack.sipp_carrier(logs, "uas_answer_bye.xml", "-d", "2000")
    with django_db_blocker.unblock():
        carrier = Carrier.objects.create(name="Browser SIPp trunk", host="127.0.0.1", port=sipp_port,
                                         max_cps=50, max_concurrent=50)
    agent_port = free_tcp_port()
    agent = stack.Process("agent", [sys.executable, "-m", "demo.agent", "--port", str(agent_port)], logs)
    processes = [sipp, agent, stack.gateway_pool(logs, processes=2), stack.recorder(logs),
                 stack.celery_worker(logs, "ui-worker"), stack.celery_beat(logs)]
    try:
        wait_for_tcp(agent_port, agent)
        yield VoiceStack(agent_url=f"ws://127.0.0.1:{agent_port}/", processes=processes)
    finally:
        for process in processes:
            process.stop()
        with django_db_blocker.unblock():
            Carrier.objects.filter(pk=carrier.pk).delete()
