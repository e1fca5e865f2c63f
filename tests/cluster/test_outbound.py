"""Acme's campaign on a cluster of three nodes sharing one PostgreSQL and one Redis: two nodes in
the US, one in the EU, each with its own address. Acme's trunks are regional (a US trunk, an EU
trunk); every call is placed by a gateway in its trunk's region, and all three nodes take calls.
Then a US node dies whole mid-campaign (SIGKILL to all its processes): the other nodes go on, its
calls are closed out with their own reason, and every contact is called exactly once."""
import re

import pytest
import redis

from tests import stack
from tests.support import wait_until

pytestmark = pytest.mark.cluster

NODES = {"n1": ("127.0.0.2", "us"), "n2": ("127.0.0.3", "us"), "n3": ("127.0.0.4", "eu")}


@pytest.fixture(scope="module")
def trunks(cluster_folder):
    """The carriers: SIPp answering every call, hanging up after 3 s."""
    us, us_port = stack.sipp_carrier(cluster_folder, "uas_answer_bye.xml", "-d", "3000")
    eu, eu_port = stack.sipp_carrier(cluster_folder, "uas_answer_bye.xml", "-d", "3000")
    yield {"us": us_port, "eu": eu_port}
    us.stop()
    eu.stop()


@pytest.fixture(scope="module")
def acme_cluster(cluster, trunks):
    answer = cluster.act("prepare", carriers=[{"name": "US trunk", "port": trunks["us"], "region": "us"},
                                              {"name": "EU trunk", "port": trunks["eu"], "region": "eu"}])
    carrier_region = dict(zip((str(pk) for pk in answer["carriers"]), ("us", "eu"), strict=True))
    for name, (address, region) in NODES.items():
        cluster.start_node(name, address, region, roles="worker,recorder,gateways,beat" if name == "n1"
                           else "worker,recorder,gateways")
    yield cluster, carrier_region


def node_of(gateway_id: str) -> str:
    return re.sub(r"-\d+$", "", gateway_id)


def finished(cluster, campaign: int, timeout: float) -> dict:
    def done():
        report = cluster.act("campaign_report", campaign=campaign)
        return report if report["state"] == "completed" and not report["non_final"] else None

    try:
        return wait_until(done, timeout, interval=2, what=f"campaign {campaign} to complete")
    except AssertionError:
        raise AssertionError(f"{cluster.act('campaign_report', campaign=campaign)}\n{cluster.tails()}") from None


def test_calls_are_placed_in_their_trunks_region_across_every_node(acme_cluster):
    cluster, carrier_region = acme_cluster
    campaign = cluster.act("start_campaign", name="Spring renewals", contacts=60, cps=10, max_concurrent=40)["campaign"]

    report = finished(cluster, campaign, 240)

    assert report["contacts_called"] == {"1": 60}, "a contact called twice, or not at all"
    assert report["outcomes"] == {"answered": 60}
    placements = report["placements"]
    assert {node_of(gw) for gw, _carrier in placements} == set(NODES), f"not every node took calls: {placements}"
    for gateway_id, carrier_id in placements:
        assert NODES[node_of(gateway_id)][1] == carrier_region[carrier_id], \
            f"a {carrier_region[carrier_id]} trunk's call was placed by {gateway_id}"


def test_a_node_killed_mid_campaign_loses_no_contact_and_dials_none_twice(acme_cluster):
    cluster, _carrier_region = acme_cluster
    shared = redis.Redis.from_url(cluster.env["REDIS_URL"])
    campaign = cluster.act("start_campaign", name="Summer renewals", contacts=120, cps=8, max_concurrent=40,
                           first=3000)["campaign"]

    def n2_calls() -> int:
        return sum(shared.scard(f"gw:n2-{i}:calls") for i in range(2))

    wait_until(lambda: n2_calls() >= 2, 120, interval=0.1, what="node n2 to hold calls")
    held = n2_calls()
    cluster.nodes["n2"].kill()
    placed_before = cluster.act("campaign_report", campaign=campaign)["calls"]

    report = finished(cluster, campaign, 240)

    assert report["contacts_called"] == {"1": 120}, f"contacts lost or dialed twice: {report}"
    assert not report["non_final"]
    assert sum(report["contacts"].values()) == 120 and not report["contacts"].get("dialing"), report["contacts"]
    assert report["reasons"].get("node_died", 0) >= held, \
        f"n2's {held} calls were not closed out as node_died: {report}\n{cluster.tails(6000)}"
    assert report["calls"] > placed_before, "nothing was dialed after the node died"
