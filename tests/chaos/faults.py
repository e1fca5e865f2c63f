"""The faults of the chaos suite, and what each did to a running campaign.

`run_fault` starts a campaign on a whole platform, waits until the carrier holds answered calls,
injects the fault (a SIGKILL, or a server or carrier gone), measures the seconds until the platform is
whole again without help, lets the campaign finish, and counts at the carrier and in the records:
contacts lost, contacts dialed twice, calls never final, durations that disagree with the carrier's,
the most calls a trunk held at once. The tests assert on the report; bench/chaos.py writes it as JSON.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from tests.chaos.carrier import Dialog, peak_concurrency
from tests.chaos.platform import ChaosPlatform

HEAL_TIMEOUT_S = 45.0  # the suite's bound for "recovers without a human" (the target, 15 s, is the bench's)
FINISH_TIMEOUT_S = 45.0  # after healing, for the campaign to complete
SETTLE_TIMEOUT_S = 15.0  # then for every call to be final in the records and over at the carrier
OUTAGE_S = 2.0  # how long a killed PostgreSQL or Redis stays down before its process manager restarts it
DURATION_TOLERANCE_S = 1.0
HEALTH_ANSWERS_EXPECTED = {"200", "503", "no answer: web down"}
FINAL_CONTACT_STATES = {"done", "failed", "dnc"}
FINAL_CALL_STATUSES = {"completed", "busy", "no-answer", "failed", "canceled"}


@dataclass
class Fault:
    name: str
    what: str
    inject: Callable[[ChaosPlatform], dict]
    restore: Callable[[ChaosPlatform], None] | None = None


def _kill_role(role: str) -> Callable[[ChaosPlatform], dict]:
    def inject(platform: ChaosPlatform) -> dict:
        victims = platform.processes(role)
        assert victims, f"no {role} process to kill: {platform.why_not_whole()}"
        victims[0].kill()
        return {"killed_pid": victims[0].pid}
    return inject


def _kill_busiest_gateway(platform: ChaosPlatform) -> dict:
    """SIGKILL the gateway worker that holds the most calls."""
    import redis

    from telephony.gateway import client

    with redis.Redis.from_url(platform.redis.url) as r:
        pool = [g for g in client.pool_status(r) if g["alive"]]
    busiest = max(pool, key=lambda g: g["active"])
    victim = next(p for p in platform.processes("gateway worker") if p.pid == busiest["pid"])
    victim.kill()
    return {"killed_pid": victim.pid, "gateway_id": busiest["gateway_id"], "its_calls": busiest["active"]}


def _kill_server(which: str) -> Callable[[ChaosPlatform], dict]:
    """SIGKILL PostgreSQL or Redis; its process manager starts it again OUTAGE_S later (same data,
    same socket)."""
    def inject(platform: ChaosPlatform) -> dict:
        server = getattr(platform, which)
        server.kill()
        failure: list[BaseException] = []

        def restart():
            time.sleep(OUTAGE_S)
            try:
                server.start()
            except BaseException as exc:  # noqa: BLE001 - reported by the report
                failure.append(exc)

        thread = threading.Thread(target=restart, daemon=True)
        thread.start()
        return {"outage_s": OUTAGE_S, "_restart": (thread, failure)}
    return inject


def _kill_trunk(platform: ChaosPlatform) -> dict:
    carrier, _ = platform.trunks["Trunk A"]
    carrier.kill()
    return {"carrier": "Trunk A"}


def _revive_trunk(platform: ChaosPlatform) -> None:
    platform.trunks["Trunk A"][0].start()


FAULTS = {fault.name: fault for fault in [
    Fault("web", "daphne (admin, REST API, /healthz) is SIGKILLed", _kill_role("web")),
    Fault("worker", "the Celery dialer worker is SIGKILLed in the middle of a dialing slice", _kill_role("worker")),
    Fault("webhooks", "the Celery webhooks worker is SIGKILLed", _kill_role("webhooks")),
    Fault("beat", "Celery beat is SIGKILLed", _kill_role("beat")),
    Fault("recorder", "the call recorder is SIGKILLed", _kill_role("recorder")),
    Fault("gateways", "the gateway supervisor is SIGKILLed (its workers get SIGTERM)", _kill_role("gateways")),
    Fault("gateway worker", "the gateway worker holding the most calls is SIGKILLed", _kill_busiest_gateway),
    Fault("media host", "a media host bridging calls to the agent is SIGKILLed", _kill_role("media host")),
    Fault("redis", f"Redis is SIGKILLed and restarted {OUTAGE_S:.0f} s later", _kill_server("redis")),
    Fault("postgres", f"PostgreSQL is SIGKILLed and restarted {OUTAGE_S:.0f} s later", _kill_server("postgres")),
    Fault("carrier", "the trunk carrying the answered calls dies (SIGKILL: no BYE, no more RTP)", _kill_trunk,
          restore=_revive_trunk),
]}


@dataclass
class FaultReport:
    fault: str
    what: str
    campaign_state: str | None = None
    contacts: int = 0
    healed_s: float | None = None  # fault → /healthz 200, every process back, every gateway in the pool
    not_healed: str = ""
    health_answers: dict = field(default_factory=dict)  # what /healthz answered while healing → times
    calls_in_flight: int = 0  # calls of the campaign under way when the fault struck
    ended_by_fault: dict = field(default_factory=dict)  # outcome/reason → calls (not the carrier's hangup)
    ended_at_carrier: dict = field(default_factory=dict)  # how the calls up at the fault ended, carrier's view
    last_fault_call_ended_after_s: float | None = None
    lost: list = field(default_factory=list)  # contacts not final once the campaign should be over
    duplicated: list = field(default_factory=list)  # contacts answered more than once at the carrier
    stuck: list = field(default_factory=list)  # calls not final in the records
    open_at_carrier: list = field(default_factory=list)  # calls the carrier still holds at the end
    duration_mismatches: list = field(default_factory=list)
    incomplete_records: list = field(default_factory=list)  # final calls missing what happened (answer time)
    peak_concurrent: dict = field(default_factory=dict)  # trunk → (most calls at once, its cap)
    details: dict = field(default_factory=dict)

    def problems(self) -> list[str]:
        found = []
        if self.healed_s is None:
            found.append(f"not healed within {HEAL_TIMEOUT_S:.0f} s: {self.not_healed}")
        wrong = [answer for answer in self.health_answers if answer not in HEALTH_ANSWERS_EXPECTED]
        if wrong:
            found.append(f"/healthz answered {wrong} while healing (expected 200, 503 JSON within 2 s, or no web)")
        if self.campaign_state != "completed":
            found.append(f"campaign {self.campaign_state}, not completed")
        for name, items in (("contacts lost", self.lost), ("contacts dialed twice", self.duplicated),
                            ("calls not final", self.stuck), ("calls still up at the carrier", self.open_at_carrier),
                            ("durations off the carrier's by more than 1 s", self.duration_mismatches),
                            ("call records incomplete", self.incomplete_records)):
            if items:
                found.append(f"{len(items)} {name}: {items[:8]}")
        for trunk, (peak, cap) in self.peak_concurrent.items():
            if peak > cap:
                found.append(f"{trunk} held {peak} calls at once, over its cap of {cap}")
        return found

    def as_dict(self) -> dict:
        return asdict(self)


def _wait(predicate, timeout: float, interval: float = 0.25) -> float | None:
    """Seconds until predicate() holds, None if it did not within timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if predicate():
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - a server down mid-fault: not yet
            pass
        time.sleep(interval)
    return None


def _dialogs(platform: ChaosPlatform, phones: set[str]) -> list[tuple[str, Dialog]]:
    return [(name, d) for name, (carrier, _) in platform.trunks.items() for d in carrier.dialogs() if d.number in phones]


def _heal(platform: ChaosPlatform, report: FaultReport) -> float | None:
    """Seconds until the platform is whole again; meanwhile, what /healthz answered each time."""
    started = time.monotonic()
    answers: Counter = Counter()
    try:
        while time.monotonic() - started < HEAL_TIMEOUT_S:
            asked = time.monotonic()
            status, body = platform.healthz()
            took = time.monotonic() - asked
            if status is None:
                answers["no answer: slow" if "timed out" in str(body) else "no answer: web down"] += 1
            elif not isinstance(body, dict):
                answers[f"{status} {body[:60]}"] += 1
            else:
                answers[str(status) + (" after more than 2 s" if took > 2 else "")] += 1
            if status == 200 and platform.all_running():
                return round(time.monotonic() - started, 2)
            time.sleep(0.2)
        report.not_healed = platform.why_not_whole()
        return None
    finally:
        report.health_answers = dict(answers)


def make_whole(platform: ChaosPlatform) -> None:
    """Before a fault: every trunk up (and healthy in the platform's eyes), every process running; a
    platform a previous fault left broken is started again."""
    for carrier, _ in platform.trunks.values():
        if not carrier.alive:
            carrier.start()
    if _wait(platform.whole, 30) is None:
        platform.restart_runner(platform.why_not_whole())

    def trunks_healthy():
        rows = platform.query("SELECT count(*) AS down FROM public.telephony_carrier WHERE enabled AND NOT healthy")
        return rows[0]["down"] == 0
    assert _wait(trunks_healthy, 20) is not None, "the trunks were not healthy again in 20 s"


def run_fault(platform: ChaosPlatform, fault: Fault, index: int) -> FaultReport:
    make_whole(platform)
    report = FaultReport(fault.name, fault.what, contacts=platform.scale.contacts)
    phones = [f"+14155{index:02d}{i:04d}" for i in range(platform.scale.contacts)]
    wanted = set(phones)
    campaign = platform.start_campaign(f"chaos: {fault.name}", phones)

    def calls_up() -> bool:
        up = [d for _, d in _dialogs(platform, wanted) if d.answered_at and d.ended_at is None]
        return len(up) >= max(4, platform.scale.max_concurrent // 2)
    assert _wait(calls_up, 30, 0.1) is not None, f"no calls answered at the carrier:\n{platform.notable_log()}"

    struck = time.time()
    injected = fault.inject(platform)
    report.details = {k: v for k, v in injected.items() if not k.startswith("_")}
    platform.say(f"{fault.name}: {fault.what} ({report.details})")
    report.healed_s = _heal(platform, report)
    if "_restart" in injected:
        thread, failure = injected["_restart"]
        thread.join(90)
        if failure:
            report.details["restart_failed"] = repr(failure[0])
    if report.healed_s is not None:
        _wait(lambda: platform.campaign_state(campaign) == "completed", FINISH_TIMEOUT_S)

    def settled() -> bool:
        calls_final = all(c["status"] in FINAL_CALL_STATUSES for c in platform.calls(campaign))
        return calls_final and all(d.ended_at for _, d in _dialogs(platform, wanted))
    _wait(settled, SETTLE_TIMEOUT_S)
    if fault.restore is not None:
        fault.restore(platform)
    _count(platform, report, campaign, wanted, struck)
    return report


def _count(platform: ChaosPlatform, report: FaultReport, campaign: int, phones: set[str], struck: float) -> None:
    report.campaign_state = platform.campaign_state(campaign)
    contacts, calls = platform.contacts(campaign), platform.calls(campaign)
    dialogs = _dialogs(platform, phones)
    now = time.time()

    report.lost = [(c["phone"], c["state"]) for c in contacts if c["state"] not in FINAL_CONTACT_STATES]
    answered_at_carrier: dict[str, list[Dialog]] = {}
    for _, dialog in dialogs:
        if dialog.answered_at:
            answered_at_carrier.setdefault(dialog.number, []).append(dialog)
    report.duplicated = [(number, len(answers)) for number, answers in answered_at_carrier.items() if len(answers) > 1]
    report.stuck = [(c["sid"], c["to_number"], c["status"]) for c in calls if c["status"] not in FINAL_CALL_STATUSES]
    report.open_at_carrier = [(name, d.number, round(now - d.invited_at, 1)) for name, d in dialogs if d.ended_at is None]

    in_flight = [c for c in calls if c["created_at"].timestamp() <= struck
                 and (c["ended_at"] is None or c["ended_at"].timestamp() >= struck)]
    report.calls_in_flight = len(in_flight)
    by_fault = [c for c in in_flight if c["reason"] != "remote_hangup"]
    report.ended_by_fault = dict(Counter(f"{c['outcome'] or c['status']}/{c['reason']}" for c in by_fault))
    ends = [c["ended_at"].timestamp() - struck for c in by_fault if c["ended_at"]]
    report.last_fault_call_ended_after_s = round(max(ends), 2) if ends else None
    report.ended_at_carrier = dict(Counter(d.ended_by or "still up" for _, d in dialogs
                                           if d.invited_at <= struck and (d.ended_at is None or d.ended_at >= struck)))

    recorded = {c["to_number"]: c for c in calls if c["answered_at"] is not None or c["outcome"] == "answered"}
    report.incomplete_records = [(c["sid"], c["to_number"], "answered without its answer time")
                                 for c in recorded.values() if c["answered_at"] is None]
    for number, answers in answered_at_carrier.items():
        call = recorded.get(number)
        if call is None:
            seen = [(c["status"], c["outcome"], c["reason"]) for c in calls if c["to_number"] == number]
            report.duration_mismatches.append((number, "answered at the carrier, not in the records", seen))
            continue
        if len(answers) > 1 or answers[0].duration is None:
            continue  # counted as a duplicate, or still up at the carrier
        duration = call["duration_s"]
        if duration is None and call["ended_at"] is not None and call["answered_at"] is not None:
            duration = (call["ended_at"] - call["answered_at"]) / dt.timedelta(seconds=1)
        if duration is None or abs(duration - answers[0].duration) > DURATION_TOLERANCE_S:
            report.duration_mismatches.append((number, call["reason"], duration and round(duration, 2),
                                               round(answers[0].duration, 2), answers[0].ended_by))
    for number in set(recorded) - set(answered_at_carrier):
        report.duration_mismatches.append((number, "answered in the records, never at the carrier"))

    for name in platform.trunks:
        peak, _ = peak_concurrency([d for trunk, d in dialogs if trunk == name], now)
        report.peak_concurrent[name] = (peak, platform.scale.max_concurrent)
