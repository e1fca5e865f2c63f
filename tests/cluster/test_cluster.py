"""Acme on a cluster of three nodes sharing one PostgreSQL and one Redis: two nodes in the US, one
in the EU, each with its own address, Kamailio in front of their gateways.

- Acme's trunks are regional (a US trunk, an EU trunk): every campaign call is placed by a gateway
  in its trunk's region, and all three nodes take calls.
- Callers dial Acme's number at Kamailio's one address: the calls spread over the three nodes and
  each reaches the number's agent.
- Every node records events: an inbound call's end read by one recorder before another reads its
  start is recorded whole.
- Calls to Acme's EU number are answered by the EU node's gateways.
- A fourth node joins with nothing configured beyond the two URLs and takes calls.
- A US node dies whole mid-campaign (SIGKILL to all its processes): the other nodes go on, its
  calls are closed out with their own reason, and every contact is called exactly once."""
import re
import shutil
import sys
import time
import uuid

import pytest
import redis

from tests import stack
from tests.cluster.nodes import Balancer
from tests.conversation import write_rtp_pcap
from tests.support import free_tcp_port, free_udp_port, wait_until

pytestmark = pytest.mark.cluster

NODES = {"n1": ("127.0.0.2", "us"), "n2": ("127.0.0.3", "us"), "n3": ("127.0.0.4", "eu"), "n4": ("127.0.0.6", "us")}
BALANCER = "127.0.0.5"
INBOUND_NUMBER = "+14155550199"  # Acme's number (tests/cluster/actions.py)
EU_NUMBER = "+14155550198"  # Acme's number in the EU


@pytest.fixture(scope="module")
def trunks(cluster_folder):
    """The carriers: SIPp answering every call, hanging up after 3 s."""
    us, us_port = stack.sipp_carrier(cluster_folder, "uas_answer_bye.xml", "-d", "3000")
    eu, eu_port = stack.sipp_carrier(cluster_folder, "uas_answer_bye.xml", "-d", "3000")
    yield {"us": us_port, "eu": eu_port}
    us.stop()
    eu.stop()


@pytest.fixture(scope="module")
def agent(cluster_folder):
    """Acme's AI agent for its inbound number (the demo agent: it echoes the caller)."""
    port = free_tcp_port()
    process = stack.Process("agent", [sys.executable, "-m", "demo.agent", "--port", str(port)], cluster_folder)
    yield process, f"ws://127.0.0.1:{port}/"
    process.stop()


@pytest.fixture(scope="module")
def acme_cluster(cluster, trunks, agent):
    cluster.env["SIP_BALANCER_ADDRESSES"] = BALANCER
    answer = cluster.act("prepare", carriers=[{"name": "US trunk", "port": trunks["us"], "region": "us"},
                                              {"name": "EU trunk", "port": trunks["eu"], "region": "eu"}],
                         inbound_stream_url=agent[1])
    carrier_region = dict(zip((str(pk) for pk in answer["carriers"]), ("us", "eu"), strict=True))
    for name in ("n1", "n2", "n3"):
        address, region = NODES[name]
        cluster.start_node(name, address, region, roles="worker,recorder,gateways,beat" if name == "n1"
                           else "worker,recorder,gateways")
    yield cluster, carrier_region


@pytest.fixture(scope="module")
def balancer(acme_cluster):
    cluster, _ = acme_cluster
    balancer = Balancer(cluster, BALANCER, free_udp_port())
    try:
        wait_until(lambda: balancer.list_path.exists() and balancer.list_path.read_text().count("\n1 sip:") == 6, 120,
                   interval=0.5, what="the six gateways in Kamailio's dispatcher list")
    except AssertionError:
        balancer.stop()
        raise AssertionError(balancer.tail()) from None
    balancer.start()
    yield balancer
    balancer.stop()


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
    assert {node_of(gw) for gw, _carrier in placements} == {"n1", "n2", "n3"}, f"not every node took calls: {placements}"
    for gateway_id, carrier_id in placements:
        assert NODES[node_of(gateway_id)][1] == carrier_region[carrier_id], \
            f"a {carrier_region[carrier_id]} trunk's call was placed by {gateway_id}"


def call_in(folder, balancer: Balancer, calls: int, number: str = INBOUND_NUMBER) -> int:
    """Callers (SIPp, with real RTP) dial Acme's number at Kamailio's address; SIPp's exit code."""
    scenario = folder / "uac_media.xml"
    caller_audio = write_rtp_pcap(folder / "caller.pcap", [(0, bytes([0x55]) * 160)] * 50)
    scenario.write_text((stack.GATEWAY_SCENARIOS / "uac_media.xml").read_text().replace(
        "@PLAY@", f'<nop><action><exec play_pcap_audio="{caller_audio}"/></action></nop>'))
    callers = stack.Process("callers", [
        shutil.which("sipp"), "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port()),
        "-mp", str(free_udp_port()), "-nostdin", "-m", str(calls), "-r", "4", "-l", "12", "-s", number,
        f"{BALANCER}:{balancer.port}"], folder)
    try:
        return callers.proc.wait(120)
    finally:
        callers.stop()


def test_inbound_calls_to_the_balancer_spread_across_nodes_and_reach_the_numbers_agent(acme_cluster, balancer,
                                                                                      agent, cluster_folder):
    cluster, _ = acme_cluster
    assert call_in(cluster_folder, balancer, 24) == 0, f"some calls failed at the caller\n{balancer.tail()}"

    def recorded():
        report = cluster.act("inbound_report")
        return report if report["statuses"] == {"completed": 24} else None

    try:
        report = wait_until(recorded, 60, interval=2, what="24 completed inbound calls")
    except AssertionError:
        raise AssertionError(f"{cluster.act('inbound_report')}\n{cluster.tails()}\n{balancer.tail()}") from None
    assert report["to"] == {INBOUND_NUMBER: 24}
    assert {node_of(gw) for gw in report["gateways"]} == {"n1", "n2", "n3"}, report["gateways"]
    assert report["agent_streams"] == 24, "not every caller reached the number's agent"
    assert len(re.findall(r"call \S+ stream \S+ started", agent[0].tail(1_000_000))) == 24


def test_calls_to_a_number_with_a_region_are_answered_by_that_regions_gateways(acme_cluster, balancer,
                                                                              cluster_folder):
    cluster, _ = acme_cluster
    assert call_in(cluster_folder, balancer, 8, EU_NUMBER) == 0, f"some calls failed at the caller\n{balancer.tail()}"

    def recorded():
        report = cluster.act("inbound_report")
        return report if report["to"].get(EU_NUMBER) == 8 and report["statuses"].keys() == {"completed"} else None

    try:
        report = wait_until(recorded, 60, interval=2, what="8 completed calls to the EU number")
    except AssertionError:
        raise AssertionError(f"{cluster.act('inbound_report')}\n{balancer.tail()}") from None
    assert {node_of(gw) for gw in report["gateways_by_number"][EU_NUMBER]} == {"n3"}, report["gateways_by_number"]


def test_an_inbound_call_whose_end_one_recorder_reads_before_another_reads_its_start_is_recorded_whole(
        acme_cluster):
    cluster, _ = acme_cluster
    call, at = uuid.uuid4().hex, time.time()
    said = {"direction": "inbound", "from": "+14155550177", "to": INBOUND_NUMBER, "gateway_id": "n2-1", "tenant": "acme"}
    initiated = {"call_id": call, "type": "initiated", "ts": at, **said}
    answered = {"call_id": call, "type": "answered", "ts": at + 0.2, **said}
    completed = {"call_id": call, "type": "completed", "ts": at + 42.2, "outcome": "answered", "duration": 42.0,
                 **said}

    # the recorder on n3 reads the answer and the hang-up while the one on n1 still holds the start
    assert cluster.act("record", events=[answered, completed])["done"] == [True, True]
    assert cluster.act("record", events=[initiated])["done"] == [True]

    record = cluster.act("inbound_call", sid=call)
    assert (record["status"], record["from"], record["to"], record["gateway"], record["duration"]) == \
        ("completed", "+14155550177", INBOUND_NUMBER, "n2-1", 42.0)
    assert (record["started_at"], record["answered_at"]) == (pytest.approx(at), pytest.approx(at + 0.2))


def test_a_new_node_joins_with_nothing_configured_and_takes_calls(acme_cluster, balancer):
    cluster, _ = acme_cluster
    address, region = NODES["n4"]
    cluster.start_node("n4", address, region, roles="worker,gateways")
    wait_until(lambda: balancer.list_path.read_text().count(f"\n1 sip:{address}:") == 2, 120, interval=0.5,
               what="the new node's gateways in Kamailio's dispatcher list")

    campaign = cluster.act("start_campaign", name="Autumn renewals", contacts=60, cps=10, max_concurrent=40,
                           first=6000)["campaign"]
    report = finished(cluster, campaign, 240)

    assert report["contacts_called"] == {"1": 60}
    assert "n4" in {node_of(gw) for gw, _carrier in report["placements"]}, report["placements"]


def test_a_node_killed_mid_campaign_loses_no_contact_and_dials_none_twice(acme_cluster, balancer, cluster_folder):
    cluster, _carrier_region = acme_cluster
    shared = redis.Redis.from_url(cluster.env["REDIS_URL"])
    campaign = cluster.act("start_campaign", name="Summer renewals", contacts=120, cps=8, max_concurrent=40,
                           first=3000)["campaign"]

    def n2_calls() -> int:
        return sum(shared.scard(f"gw:n2-{i}:calls") for i in range(2))

    wait_until(lambda: n2_calls() >= 2, 120, interval=0.1, what="node n2 to hold calls")
    held = n2_calls()
    cluster.nodes["n2"].kill()
    n2 = re.escape(NODES["n2"][0])
    wait_until(lambda: not re.search(rf"URI: sip:{n2}:\d+\s+FLAGS: A", balancer.rpc("dispatcher.list")), 8, 0.2,
               what="Kamailio to take node n2's gateways out")
    placed_before = cluster.act("campaign_report", campaign=campaign)["calls"]

    report = finished(cluster, campaign, 240)

    assert report["contacts_called"] == {"1": 120}, f"contacts lost or dialed twice: {report}"
    assert not report["non_final"]
    assert sum(report["contacts"].values()) == 120 and not report["contacts"].get("dialing"), report["contacts"]
    assert report["reasons"].get("node_died", 0) >= held, \
        f"n2's {held} calls were not closed out as node_died: {report}\n{cluster.tails(6000)}"
    assert report["calls"] > placed_before, "nothing was dialed after the node died"
    # once the campaign no longer fills every slot left, callers get through the balancer
    inbound_before = cluster.act("inbound_report")["calls"]
    assert call_in(cluster_folder, balancer, 8) == 0, "inbound calls failed after the node died"
    wait_until(lambda: cluster.act("inbound_report")["statuses"] == {"completed": inbound_before + 8}, 60, interval=2,
               what="the inbound calls placed after the node died to be recorded, all completed")
