"""Acme-style campaigns dialed for real while the platform's parts die one at a time (SIGKILL, no
warning), as they would in production: each test starts a campaign of its own on the whole platform
(`manage.py run` against its own PostgreSQL and Redis, SIPp trunks that answer with RTP and hang up
after 3-5 s), kills one thing once the trunk holds answered calls, and then proves that, with no
human help:

- the platform heals: /healthz answers 200 again, every process is running again and every gateway
  worker is back in the pool;
- the campaign completes with no contact lost (every contact final) and none dialed twice (each
  number answered at most once, counted at the carrier);
- every call is final in the records, none is left up at the carrier, and every answered call's
  recorded duration is within 1 s of the carrier's own;
- no trunk ever held more calls at once than its cap, as the carrier counts them.

How fast each fault heals is measured by bench/chaos.py (target: 15 s).
"""
import json

import pytest

from tests.chaos.faults import FAULTS, run_fault

pytestmark = pytest.mark.chaos


def survives(platform, fault_name: str, index: int) -> None:
    report = run_fault(platform, FAULTS[fault_name], index)
    print(json.dumps(report.as_dict(), default=str))  # shown with -rA: how the fault went, passed or not
    problems = report.problems()
    assert not problems, "\n".join([f"after: {report.what}", *problems, json.dumps(report.as_dict(), default=str),
                                    "--- the platform's log, notable lines:", platform.notable_log()])


def test_the_web_process_dies(chaos_platform):
    """daphne is killed while a campaign runs: it is restarted, and the campaign never notices."""
    survives(chaos_platform, "web", 1)


def test_the_dialer_worker_dies_in_the_middle_of_a_slice(chaos_platform):
    """The Celery worker running the campaign's dialing loop is killed with contacts claimed and calls
    being placed: it is restarted and the campaign goes on, no contact left claimed, none dialed twice."""
    survives(chaos_platform, "worker", 2)


def test_the_webhooks_worker_dies(chaos_platform):
    """The status-callback worker is killed: it is restarted; dialing never depended on it."""
    survives(chaos_platform, "webhooks", 3)


def test_beat_dies(chaos_platform):
    """Celery beat (which starts the dialing loops) is killed: it is restarted and the campaign completes."""
    survives(chaos_platform, "beat", 4)


def test_the_call_recorder_dies(chaos_platform):
    """The recorder is killed with events unread: it is restarted and records every call's end, late
    but with its true duration."""
    survives(chaos_platform, "recorder", 5)


def test_the_gateway_supervisor_dies(chaos_platform):
    """The gateway supervisor is killed (its workers stop with it, hanging up their calls): the pool
    is started again and every call it held ends in the records as it ended at the carrier."""
    survives(chaos_platform, "gateways", 6)


def test_a_gateway_worker_dies_with_answered_calls(chaos_platform):
    """The busiest gateway worker is killed: its calls are hung up at the carrier (BYE) and closed out
    in the records at that moment, its slots are not reused before the carrier has let go of them,
    and it is restarted."""
    survives(chaos_platform, "gateway worker", 7)


def test_a_media_host_dies(chaos_platform):
    """A media host bridging calls to the agent is killed: its calls end with their reason, the others
    go on, and it is restarted."""
    survives(chaos_platform, "media host", 8)


def test_redis_dies_and_comes_back(chaos_platform):
    """Redis is killed and comes back 2 s later on the same socket: gateways ride out the outage,
    no call is left in progress, the campaign completes."""
    survives(chaos_platform, "redis", 9)


def test_postgresql_dies_and_comes_back(chaos_platform):
    """PostgreSQL is killed and comes back 2 s later: /healthz says so meanwhile (503 JSON), the
    recorder and the dialer reconnect, every call is recorded."""
    survives(chaos_platform, "postgres", 10)


def test_a_carrier_dies_with_answered_calls(chaos_platform):
    """The trunk holding the answered calls dies without a word (no BYE, no RTP): those calls end by
    the RTP inactivity timeout with the time the carrier was last heard, the trunk is marked down,
    and the rest of the campaign fails over to the other trunk."""
    survives(chaos_platform, "carrier", 11)
