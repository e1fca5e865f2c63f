"""Acme's node loses its network to PostgreSQL and Redis mid-call, but not to its carrier.

The node runs in a network namespace of its own with two links: one to the control plane (the
namespace holding PostgreSQL and Redis) and one to the carrier (SIPp, and the far end's phone line
that counts the RTP it gets). Three campaign calls are up, with Acme's agent talking, when the
control-plane link goes down for longer than the calls last: the audio of every call goes on to its
end, and once the link is back the node reports the calls, final, with their true durations. A second
node, beside the control plane, sees the first one's heartbeats stop but leaves its calls alone: the
node still answers SIP on the carriers' network, so it is cut off, not dead."""
import json
import shutil
import subprocess
import sys
import time

import pytest

from tests import stack
from tests.cluster.netns import Link, Namespace, unique
from tests.cluster.nodes import Cluster
from tests.cluster.servers import PostgresServer, RedisServer
from tests.support import free_tcp_port, free_udp_port, wait_until

pytestmark = pytest.mark.cluster

CONTROL, NODE_ON_CONTROL = "10.77.1.1", "10.77.1.2"  # the control plane's link
CARRIER, NODE_ON_CARRIER = "10.77.2.1", "10.77.2.2"  # the carrier's link
HOLD_S = 30  # the carrier hangs up this long after answering: the calls outlast the second node's start
CALLS = 3


@pytest.fixture(scope="module")
def network():
    """Two namespaces (the control plane and carrier side; the node) and the two links between them."""
    core, node = Namespace(unique("vpcore")), Namespace(unique("vpnode"))
    try:
        yield {"core": core, "node": node,
               "control": Link(unique("vc"), core, CONTROL, node, NODE_ON_CONTROL),
               "carrier": Link(unique("vs"), core, CARRIER, node, NODE_ON_CARRIER)}
    finally:
        node.delete()
        core.delete()


@pytest.fixture(scope="module")
def control_plane(cluster_folder, network):
    postgres = PostgresServer(cluster_folder / "postgres", CONTROL, network["core"]).start()
    redis = RedisServer(cluster_folder / "redis", CONTROL, network["core"]).start()
    yield postgres, redis
    redis.stop()
    postgres.stop()


class Inside(stack.Process):
    """A process of the test run inside a namespace."""

    def __init__(self, name: str, namespace: Namespace, argv: list[str], folder):
        super().__init__(name, namespace.run(argv), folder)


@pytest.fixture(scope="module")
def phone_line(cluster_folder, network):
    """The far end's phone line at the carrier: counts each call's RTP."""
    port, path = free_udp_port(), cluster_folder / "rtp.json"
    counter = Inside("phone-line", network["core"],
                     [sys.executable, "-m", "tests.cluster.rtp_counter", CARRIER, str(port), str(path)], cluster_folder)
    yield port, path
    counter.stop()


@pytest.fixture(scope="module")
def carrier(cluster_folder, network, phone_line):
    """SIPp as Acme's trunk: answers with its SDP pointing our audio at the phone line, hangs up
    after HOLD_S."""
    scenario = cluster_folder / "uas_line_bye.xml"
    scenario.write_text((stack.GATEWAY_SCENARIOS / "uas_answer_bye.xml").read_text()
                        .replace("m=audio [media_port]", f"m=audio {phone_line[0]}")
                        .replace("<pause/>", f'<pause milliseconds="{HOLD_S * 1000}"/>'))
    port = free_udp_port()
    sipp = Inside("carrier", network["core"], [shutil.which("sipp"), "-sf", str(scenario), "-i", CARRIER, "-p",
                                               str(port), "-mp", str(free_udp_port()), "-nostdin"], cluster_folder)
    yield port
    sipp.stop()


@pytest.fixture(scope="module")
def acme_node(cluster_folder, network, control_plane, carrier):
    """Acme's tenant and trunk, and its one node (gateways, dialer, recorder) with Acme's agent on it."""
    postgres, redis = control_plane
    cluster = Cluster(cluster_folder, postgres.url, redis.url, network["core"], CARRIER_HEALTH_INTERVAL="3600")
    cluster.act("prepare", carriers=[{"name": "Acme trunk", "host": CARRIER, "port": carrier}])
    agent_port = free_tcp_port()
    agent = Inside("agent", network["node"], [sys.executable, "-m", "demo.agent", "--port", str(agent_port),
                                              "--turns", "0", "--echo-delay", "0"], cluster_folder)
    cluster.start_node("n1", NODE_ON_CARRIER, roles="worker,recorder,gateways,beat", gateways=1,
                       namespace=network["node"], OUTBOUND_ALLOW=f"127.0.0.1:{agent_port}")
    yield cluster, f"ws://127.0.0.1:{agent_port}/"
    cluster.stop()
    agent.stop()


def heard(path) -> dict:
    """What the phone line got, per call: packets, first and last arrival, longest silence."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def test_a_node_cut_off_from_the_control_plane_keeps_its_calls_talking_and_reports_them_when_back(
        acme_node, network, phone_line):
    cluster, agent_url = acme_node
    campaign = cluster.act("start_campaign", name="Winter renewals", contacts=CALLS, cps=5, max_concurrent=CALLS,
                           stream_url=agent_url)["campaign"]
    _, rtp = phone_line

    def all_talking():  # the phone line rewrites its file twice a second: "last" may be that old
        now = time.time()
        calls = heard(rtp).values()
        return len(calls) == CALLS and all(now - c["first"] > 2 and now - c["last"] < 1.5 for c in calls)

    try:
        wait_until(all_talking, 120, interval=0.25, what=f"{CALLS} calls talking to the phone line")
    except AssertionError:
        raise AssertionError(f"{heard(rtp)}\n{cluster.act('campaign_report', campaign=campaign)}\n"
                             f"{cluster.tails(6000)}") from None

    cluster.start_node("n2", CARRIER, roles="gateways", gateways=1, namespace=network["core"])
    wait_until(lambda: "n2-0" in cluster.act("live_gateways")["gateways"], 120, interval=1,
               what="the second node's gateway")

    try:
        wait_until(all_talking, 3, interval=0.25, what="the calls still talking")
    except AssertionError:
        raise AssertionError(f"the calls ended before the cut (the second node took long to start): {heard(rtp)}\n"
                             f"{cluster.act('campaign_report', campaign=campaign)}\n{cluster.tails(6000)}") from None
    network["control"].cut()
    cut_at = time.time()
    assert subprocess.run(network["node"].run(["ping", "-c", "1", "-W", "1", CONTROL]),
                          capture_output=True).returncode != 0, "the control plane is still reachable"
    wait_until(lambda: all(time.time() - c["last"] > 2 for c in heard(rtp).values()), HOLD_S + 10, interval=0.5,
               what="the carrier to hang up every call")
    during_cut = heard(rtp)
    time.sleep(max(0.0, cut_at + HOLD_S + 3 - time.time()))
    assert cluster.act("campaign_report", campaign=campaign)["non_final"] == CALLS, \
        f"closed out while cut off: {cluster.act('campaign_report', campaign=campaign)}\n{cluster.tails(4000)}"
    network["control"].restore()

    for call in during_cut.values():  # the audio went on through the cut until the carrier's hang-up
        assert call["last"] > cut_at + 2, f"a call's audio stopped when the link went down: {during_cut}"
        assert call["gap"] < 0.5, f"a call's audio stopped for {call['gap']:.2f} s: {during_cut}"
        assert call["last"] - call["first"] > HOLD_S - 2, during_cut

    def reported():
        report = cluster.act("campaign_report", campaign=campaign)
        return report if report["calls"] == CALLS and not report["non_final"] else None

    try:
        report = wait_until(reported, 90, interval=2, what="the node to report its calls")
    except AssertionError:
        raise AssertionError(f"{cluster.act('campaign_report', campaign=campaign)}\n{cluster.tails(6000)}") from None
    assert report["contacts_called"] == {"1": CALLS}
    assert report["outcomes"] == {"answered": CALLS}, report
    for duration in report["durations"]:
        assert HOLD_S - 0.5 < duration < HOLD_S + 1.5, f"not the calls' true durations: {report['durations']}"
