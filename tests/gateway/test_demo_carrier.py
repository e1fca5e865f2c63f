"""The demo carrier (demo/carrier.py) against a real gateway worker, plus its SIP/SDP helpers."""
from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo import carrier as dc
from telephony.gateway import client
from telephony.gateway import events as ev
from telephony.sip_options import ping
from tests.gateway.gwhelpers import (
    ENV,
    ROOT,
    dumps,
    free_udp_port,
    leg,
    types,
    wait_event,
    wait_final,
    wait_for,
)
from tests.support import stop_process

CALL_LINE = re.compile(r"call (?P<call_id>\S+) from=(?P<from>\S+) to=(?P<to>\S+) result=(?P<result>\S+) "
                       r"reason=(?P<reason>\S+) duration=(?P<duration>[\d.]+) sent=(?P<sent>\d+) "
                       r"received=(?P<received>\d+)")


class DemoCarrierProc:
    def __init__(self, log_path: Path, *args):
        self.port = free_udp_port()
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "demo.carrier", "--port", str(self.port), "--host", "127.0.0.1",
             *map(str, args)],
            cwd=ROOT, env=ENV, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: "listening on udp" in self.text() or self.proc.poll() is not None, 10,
                 what="demo carrier start")
        assert self.proc.poll() is None, self.text()

    @property
    def uri_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def call_lines(self) -> list[dict]:
        return [m.groupdict() for m in CALL_LINE.finditer(self.text())]

    def wait_call_line(self, timeout: float = 15.0) -> dict:
        return wait_for(lambda: next(iter(self.call_lines()), None), timeout, what="demo carrier call log line")

    def stop(self, timeout: float = 10.0) -> int:
        code = stop_process(self.proc, timeout)
        self.log.close()
        return code


@pytest.fixture
def demo_carrier(tmp_path):
    started: list[DemoCarrierProc] = []

    def start(*args) -> DemoCarrierProc:
        c = DemoCarrierProc(tmp_path / f"demo_carrier_{len(started)}.log", *args)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def originate(r, legs, **kw):
    cmd = {"from": "+15550001111", "to": "+14155550199", "ring_timeout": 20, "max_duration": 60,
           "tenant": "demo", "legs": legs, **kw}
    return client.originate(r, cmd)


# ------------------------------------------------------------------------------ against a gateway worker

def test_answered_call_platform_hangup(r, new_gateway, demo_carrier):
    carrier = demo_carrier("--answer-after", "0.3")
    gw = new_gateway("demo-gw-1")
    call_id = originate(r, [leg(carrier.uri_host, "demo", number="+14155550199")])
    wait_event(r, call_id, ev.ANSWERED, timeout=20)
    time.sleep(0.5)  # let some RTP flow
    assert client.hangup(r, call_id) == gw.gateway_id
    evs = wait_final(r, call_id)
    assert types(evs) == ["initiated", "leg_started", "ringing", "answered", "completed"], dumps(evs)
    done = evs[-1]
    assert done["outcome"] == ev.OUTCOME_ANSWERED
    assert done["hangup_by"] == ev.BY_PLATFORM and done["reason"] == ev.REASON_HANGUP_REQUESTED
    line = carrier.wait_call_line()
    assert line["result"] == "completed" and line["reason"] == "caller_bye", carrier.text()
    assert int(line["sent"]) > 0, carrier.text()
    assert line["to"].startswith("sip:+14155550199@")
    assert line["from"].startswith("sip:+15550001111@")
    assert float(line["duration"]) > 0
    assert evs[3]["sip_call_id"] == line["call_id"]
    assert carrier.stop() == 0


def test_options_ping(demo_carrier):
    carrier = demo_carrier()
    res = asyncio.run(ping("127.0.0.1", carrier.port, timeout=5))
    assert res.ok and res.code == 200, res


def test_busy_every_call(r, new_gateway, demo_carrier):
    carrier = demo_carrier("--busy-every", "1", "--answer-after", "0.2")
    new_gateway("demo-gw-2")
    call_id = originate(r, [leg(carrier.uri_host, "demo", number="+14155550199")])
    evs = wait_final(r, call_id, timeout=20)
    assert types(evs) == ["initiated", "leg_started", "leg_failed", "failed"], dumps(evs)
    assert evs[-1]["outcome"] == ev.OUTCOME_BUSY and evs[-1]["sip_code"] == 486, dumps(evs)
    line = carrier.wait_call_line()
    assert line["result"] == "busy" and line["sent"] == "0"


def test_callee_hangs_up_after(r, new_gateway, demo_carrier):
    carrier = demo_carrier("--hangup-after", "1", "--answer-after", "0.2")
    new_gateway("demo-gw-3")
    call_id = originate(r, [leg(carrier.uri_host, "demo", number="+14155550199")])
    evs = wait_final(r, call_id, timeout=30)
    assert types(evs) == ["initiated", "leg_started", "ringing", "answered", "completed"], dumps(evs)
    done = evs[-1]
    assert done["outcome"] == ev.OUTCOME_ANSWERED and done["hangup_by"] == ev.BY_CALLEE, dumps(evs)
    line = carrier.wait_call_line()
    assert line["result"] == "completed" and line["reason"] == "hangup_after"
    assert int(line["sent"]) > 0


def test_ring_then_cancel(r, new_gateway, demo_carrier):
    carrier = demo_carrier("--answer-after", "30")
    new_gateway("demo-gw-4")
    call_id = originate(r, [leg(carrier.uri_host, "demo", number="+14155550199")])
    wait_event(r, call_id, ev.RINGING, timeout=20)
    client.hangup(r, call_id)
    evs = wait_final(r, call_id, timeout=20)
    assert evs[-1]["type"] == ev.FAILED and evs[-1]["outcome"] == ev.OUTCOME_CANCELLED, dumps(evs)
    line = carrier.wait_call_line()
    assert line["result"] == "cancelled"


def test_shutdown_sends_bye(r, new_gateway, demo_carrier):
    carrier = demo_carrier("--answer-after", "0.2")
    new_gateway("demo-gw-5")
    call_id = originate(r, [leg(carrier.uri_host, "demo", number="+14155550199")])
    wait_event(r, call_id, ev.ANSWERED, timeout=20)
    assert carrier.stop() == 0
    evs = wait_final(r, call_id, timeout=20)
    assert evs[-1]["type"] == ev.COMPLETED and evs[-1]["hangup_by"] == ev.BY_CALLEE, dumps(evs)
    assert carrier.call_lines()[0]["reason"] == "shutdown"


# ------------------------------------------------------------------------------ raw SIP over UDP

INVITE = (
    "INVITE sip:+14155550199@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{lport};rport;branch=z9hG4bK{branch}\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:+15550001111@127.0.0.1>;tag=abc\r\n"
    "To: <sip:+14155550199@127.0.0.1>\r\n"
    "Call-ID: {call_id}\r\n"
    "CSeq: 10 INVITE\r\n"
    "Contact: <sip:gw@127.0.0.1:{lport}>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n\r\n{sdp}"
)
OFFER = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=pjmedia\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio {rtp} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
         "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n")


def _recv_until(sock: socket.socket, pred, timeout: float = 5.0) -> list[dc.SipMessage]:
    got: list[dc.SipMessage] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            break
        msg = dc.parse_message(data)
        got.append(msg)
        if pred(msg):
            return got
    raise AssertionError(f"no matching message; got {[m.code or m.method for m in got]}")


def test_raw_invite_rtp_ack_retransmit_bye_and_unknown_method(demo_carrier):
    carrier = demo_carrier("--answer-after", "0.1")
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    rtp.bind(("127.0.0.1", 0))
    try:
        lport, rport = sip.getsockname()[1], rtp.getsockname()[1]
        sdp = OFFER.format(rtp=rport)
        invite = INVITE.format(port=carrier.port, lport=lport, branch="1", call_id="raw-1", length=len(sdp), sdp=sdp)
        sip.sendto(invite.encode(), ("127.0.0.1", carrier.port))
        msgs = _recv_until(sip, lambda m: m.code == 200)
        assert [m.code for m in msgs] == [100, 180, 200]
        ok = msgs[-1]
        assert dc.tag_of(ok.get("to")) and ok.get("contact") and ok.cseq == (10, "INVITE")
        top_via = ok.get_all("via")[0]
        assert f"rport={lport}" in top_via and "received=127.0.0.1" in top_via
        answer = dc.parse_sdp(ok.body)
        assert answer.payload_types == [0, 101] and answer.telephone_event_pt == 101
        # no ACK yet: the 200 OK is retransmitted
        again = _recv_until(sip, lambda m: m.code == 200, timeout=3)
        assert again[-1].get("to") == ok.get("to")
        # RTP arrives: PCMU, 160-byte payloads, consecutive sequence numbers and timestamps
        rtp.settimeout(5)
        pkts = [rtp.recvfrom(2048)[0] for _ in range(5)]
        assert all(len(p) == 12 + 160 and p[1] & 0x7F == 0 for p in pkts)
        seqs = [int.from_bytes(p[2:4], "big") for p in pkts]
        tss = [int.from_bytes(p[4:8], "big") for p in pkts]
        assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False))
        assert all((b - a) % 2**32 == 160 for a, b in zip(tss, tss[1:], strict=False))
        assert len({p[8:12] for p in pkts}) == 1
        to = ok.get("to")
        ack = (f"ACK sip:demo@127.0.0.1:{carrier.port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK2\r\n"
               f"From: <sip:+15550001111@127.0.0.1>;tag=abc\r\nTo: {to}\r\nCall-ID: raw-1\r\nCSeq: 10 ACK\r\n"
               "Content-Length: 0\r\n\r\n")
        sip.sendto(ack.encode(), ("127.0.0.1", carrier.port))
        info = ack.replace("ACK sip", "INFO sip").replace("10 ACK", "11 INFO").replace("bK2", "bK3")
        sip.sendto(info.encode(), ("127.0.0.1", carrier.port))
        assert _recv_until(sip, lambda m: m.code is not None and m.code != 200)[-1].code == 501
        rtp.sendto(b"\x80\x00" + b"\x00" * 10 + b"\xff" * 160, ("127.0.0.1", dc.parse_sdp(ok.body).port))
        time.sleep(0.1)
        # re-INVITE in the dialog: 200 with the same SDP, retransmitted until its ACK
        reinvite = invite.replace("To: <sip:+14155550199@127.0.0.1>", f"To: {to}").replace(
            "CSeq: 10 INVITE", "CSeq: 13 INVITE").replace("branch=z9hG4bK1", "branch=z9hG4bK5")
        sip.sendto(reinvite.encode(), ("127.0.0.1", carrier.port))
        re_ok = _recv_until(sip, lambda m: m.cseq == (13, "INVITE") and m.code == 200)[-1]
        assert re_ok.body == ok.body and re_ok.get("to") == to
        sip.sendto(ack.replace("10 ACK", "13 ACK").replace("bK2", "bK6").encode(), ("127.0.0.1", carrier.port))
        bye = ack.replace("ACK sip", "BYE sip").replace("10 ACK", "12 BYE").replace("bK2", "bK4")
        sip.sendto(bye.encode(), ("127.0.0.1", carrier.port))
        resp = _recv_until(sip, lambda m: m.cseq == (12, "BYE"))[-1]
        assert resp.code == 200
        line = carrier.wait_call_line()
        assert line["call_id"] == "raw-1" and int(line["sent"]) >= 5 and int(line["received"]) == 1
    finally:
        sip.close()
        rtp.close()


# ------------------------------------------------------------------------------ units

PJSUA_OFFER = (
    "v=0\r\no=- 3920000000 3920000000 IN IP4 127.0.0.1\r\ns=pjmedia\r\nb=AS:84\r\nt=0 0\r\n"
    "a=X-nat:0\r\nm=audio 30012 RTP/AVP 0 8 101\r\nc=IN IP4 10.1.2.3\r\nb=TIAS:64000\r\n"
    "a=rtcp:30013 IN IP4 10.1.2.3\r\na=sendrecv\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ssrc:123 cname:abc\r\n"
)


def test_parse_sdp_pjsua_offer():
    offer = dc.parse_sdp(PJSUA_OFFER.encode())
    assert (offer.address, offer.port) == ("10.1.2.3", 30012)
    assert offer.payload_types == [0, 8, 101] and offer.has_pcmu
    assert offer.telephone_event_pt == 101 and offer.direction == "sendrecv"


def test_parse_sdp_session_connection_direction_and_errors():
    offer = dc.parse_sdp("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\na=sendonly\n"
                         "m=audio 4000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\nm=video 5000 RTP/AVP 96\nc=IN IP4 9.9.9.9\n")
    assert (offer.address, offer.port) == ("1.2.3.4", 4000)
    assert not offer.has_pcmu and offer.telephone_event_pt is None and offer.direction == "sendonly"
    with pytest.raises(dc.SipError):
        dc.parse_sdp("v=0\nc=IN IP4 1.2.3.4\nt=0 0\n")
    with pytest.raises(dc.SipError):
        dc.parse_sdp("v=0\nt=0 0\nm=audio 4000 RTP/AVP 0\n")


def test_build_sdp_answer():
    offer = dc.parse_sdp(PJSUA_OFFER)
    answer = dc.build_sdp_answer(offer, "127.0.0.1", 40000, session_id=42, version=3).decode()
    assert answer.endswith("\r\n") and "\n" not in answer.replace("\r\n", "")
    lines = answer.split("\r\n")
    assert lines[:6] == ["v=0", "o=- 42 3 IN IP4 127.0.0.1", "s=demo-carrier", "c=IN IP4 127.0.0.1", "t=0 0",
                         "m=audio 40000 RTP/AVP 0 101"]
    assert "a=rtpmap:0 PCMU/8000" in lines and "a=rtpmap:101 telephone-event/8000" in lines
    assert "a=fmtp:101 0-16" in lines and "a=sendrecv" in lines
    parsed = dc.parse_sdp(answer)
    assert (parsed.address, parsed.port, parsed.payload_types) == ("127.0.0.1", 40000, [0, 101])
    # no telephone-event offered: none answered; hold (sendonly) answered recvonly
    plain = dc.SdpOffer("1.2.3.4", 4000, [0], None, "sendonly")
    text = dc.build_sdp_answer(plain, "::1", 40002, session_id=1).decode()
    assert "m=audio 40002 RTP/AVP 0\r\n" in text and "telephone-event" not in text
    assert "c=IN IP6 ::1" in text and "a=recvonly" in text


def test_parse_message_and_response_headers():
    raw = (b"INVITE sip:+1415@127.0.0.1:5090 SIP/2.0\r\n"
           b"v: SIP/2.0/UDP 10.0.0.1:5062;rport;branch=z9hG4bKx1, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKx0\r\n"
           b"Record-Route: <sip:proxy.example;lr>\r\n"
           b'f: "Caller, A" <sip:+1555@10.0.0.1>;tag=ft\r\nt: <sip:+1415@127.0.0.1>\r\ni: cid-1\r\n'
           b"CSeq: 7 INVITE\r\nm: <sip:gw@10.0.0.1:5062;ob>\r\nl: 0\r\n\r\n")
    msg = dc.parse_message(raw)
    assert msg.method == "INVITE" and msg.call_id == "cid-1" and msg.cseq == (7, "INVITE")
    assert msg.branch == "z9hG4bKx1" and len(msg.get_all("via")) == 2
    assert dc.tag_of(msg.get("from")) == "ft" and dc.tag_of(msg.get("to")) is None
    assert dc.name_addr_uri(msg.get("contact")) == "sip:gw@10.0.0.1:5062;ob"
    assert dc.uri_hostport("sip:gw@10.0.0.1:5062;ob") == ("10.0.0.1", 5062)
    assert dc.uri_hostport("sip:[::1]:5070;transport=udp") == ("::1", 5070)
    assert dc.uri_hostport("sip:carrier.example") == ("carrier.example", 5060)
    resp = dc.parse_message(dc.build_response(msg, 180, ("192.168.1.5", 40000), to_tag="tt"))
    assert resp.code == 180 and resp.cseq == (7, "INVITE") and resp.call_id == "cid-1"
    vias = resp.get_all("via")
    assert vias[0] == "SIP/2.0/UDP 10.0.0.1:5062;rport=40000;branch=z9hG4bKx1;received=192.168.1.5"
    assert vias[1] == "SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKx0"
    assert dc.tag_of(resp.get("to")) == "tt" and resp.get("from") == msg.get("from")
    assert resp.get_all("record-route") == ["<sip:proxy.example;lr>"]
    trying = dc.parse_message(dc.build_response(msg, 100, ("10.0.0.1", 5062), to_tag="tt"))
    assert dc.tag_of(trying.get("to")) is None
    with pytest.raises(dc.SipError):
        dc.parse_message(b"INVITE sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n")


def test_rtp_packet_and_frames(tmp_path):
    pkt = dc.rtp_packet(65535, 2**32 - 80, 0xDEADBEEF, b"\xff" * 160, marker=True)
    assert pkt[:12] == bytes([0x80, 0x80, 0xFF, 0xFF]) + (2**32 - 80).to_bytes(4, "big") + bytes.fromhex("deadbeef")
    prompt = tmp_path / "p.raw"
    prompt.write_bytes(b"\x01" * 300)
    frames = dc.load_frames(prompt, silence_s=1.0)
    assert all(len(f) == 160 for f in frames)
    assert len(frames) == -(-(300 + 8000) // 160)
    assert frames[0] == b"\x01" * 160 and frames[1][:140] == b"\x01" * 140 and frames[1][140:] == b"\xff" * 20
    real = dc.load_frames()
    assert len(real) * 160 >= dc.PROMPT_PATH.stat().st_size + 8000
