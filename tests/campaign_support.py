"""Acme's campaigns dialed for real, for the tests that run them through the platform's processes
(tests/stack.py) against SIPp carriers: the trunks and numbers of a test, its campaigns, and what
became of them."""
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from django_tenants.utils import schema_context

from campaigns import services
from campaigns.models import Campaign, CampaignContact, Contact, ContactList
from telephony.calls.models import Call
from telephony.models import Carrier, Number
from tenants.models import Tenant
from tests import stack
from tests.support import wait_until

SCENARIOS = stack.GATEWAY_SCENARIOS
ALL_DAY = {"window_start": dt.time(0, 0), "window_end": dt.time(23, 59, 59), "weekdays": list(range(7))}


def running_platform(log_dir: Path, webhooks: bool = False) -> Iterator[dict[str, stack.Process]]:
    """For a fixture: the processes that dial campaigns, by name (gateway pool, recorder, dialer
    worker, beat, and the webhooks worker for status callbacks), stopped when it is done."""
    processes = {
        "gateways": stack.gateway_pool(log_dir, processes=3),
        "recorder": stack.recorder(log_dir),
        "worker": stack.celery_worker(log_dir, "dialer"),
        "beat": stack.celery_beat(log_dir),
    }
    if webhooks:
        processes["webhooks"] = stack.celery_worker(log_dir, "webhooks", queue="webhooks", concurrency=16)
    try:  # up before the first campaign starts (a loaded machine takes a while to start them)
        wait_until(lambda: _ready(processes), 120, 0.5, what="the platform to start")
    except AssertionError:
        raise AssertionError(platform_logs(processes)) from None
    yield processes
    for process in processes.values():
        process.stop()


def _ready(processes: dict[str, stack.Process]) -> bool:
    from core.redis_client import get_redis
    from telephony.gateway import client as gateway
    from voiceplatform.celery import app

    answering = {name.split("@")[0] for reply in app.control.ping(timeout=0.5) for name in reply}
    wanted = {"dialer", "webhooks"} if "webhooks" in processes else {"dialer"}
    return wanted <= answering and gateway.pool_capacity(get_redis())[0] >= 3 * 4  # 3 gateways, 4 calls each


def platform_logs(platform) -> str:
    return "\n".join(f"--- {name}\n{process.tail(1500)}" for name, process in platform.items())


class Trunks:
    """SIPp carriers and Acme's caller-ID numbers for one test, removed afterwards."""

    def __init__(self, tmp_path):
        self.tmp_path, self.processes, self.rows = tmp_path, [], []
        self.acme = Tenant.objects.get(schema_name="acme")

    def carrier(self, name: str, scenario: str, *args: str, region: str = "", max_concurrent: int = 50,
                **subst) -> Carrier:
        path = SCENARIOS / scenario
        if subst:  # a template: SIPp checks status codes when it loads the file
            text = path.read_text()
            for key, value in subst.items():
                text = text.replace(f"@{key}@", str(value))
            path = self.tmp_path / f"{name.replace(' ', '_')}.xml"
            path.write_text(text)
        sipp, port = stack.sipp_carrier(self.tmp_path, str(path), *args)
        self.processes.append(sipp)
        row = Carrier.objects.create(name=name, host="127.0.0.1", port=port, region=region,
                                     max_cps=100, max_concurrent=max_concurrent)
        self.rows.append(row)
        return row

    def number(self, e164: str, region: str = "") -> str:
        self.rows.append(Number.objects.create(e164=e164, tenant=self.acme, region=region))
        return e164

    def remove(self):
        for process in self.processes:
            process.stop()
        for row in reversed(self.rows):
            row.delete()


def new_campaign(made: list, name: str, people: list[tuple[str, str, str]], **settings) -> Campaign:
    """A campaign over a new contact list of (phone, name, time zone), started at once."""
    with schema_context("acme"):
        contacts = ContactList.objects.create(name=name)
        for phone, person, zone in people:
            Contact.objects.create(contact_list=contacts, phone=phone, name=person, time_zone=zone)
        # No AI endpoint: answered calls are held silent (campaign_create would ask for one).
        campaign = Campaign.objects.create(name=name, contact_list=contacts, stream_url="", **settings)
        made.append(campaign)
        services.campaign_start(campaign.pk)
        return campaign


def calls_of(campaign, **filters) -> list[Call]:
    with schema_context("acme"):
        return list(Call.objects.filter(campaign_id=campaign.pk, **filters).order_by("created_at"))


def contacts_of(campaign) -> dict[str, CampaignContact]:
    with schema_context("acme"):
        return {cc.contact.name: cc for cc in
                CampaignContact.objects.filter(campaign=campaign).select_related("contact")}


def campaign_state(campaign) -> str:
    with schema_context("acme"):
        return Campaign.objects.get(pk=campaign.pk).state


def wait_completed(campaign, platform, timeout: float) -> None:
    try:
        wait_until(lambda: campaign_state(campaign) == Campaign.State.COMPLETED, timeout, 0.25,
                   what=f"campaign {campaign.name!r} to complete")
    except AssertionError:
        raise AssertionError(platform_logs(platform)) from None
