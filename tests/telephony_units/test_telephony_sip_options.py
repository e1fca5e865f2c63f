"""SIP OPTIONS pings against SIPp and against misbehaving fake peers; the flap-damping tracker."""
import asyncio
import socket
import threading

import pytest

from telephony.sip_options import HealthTracker, build_options, parse_status, ping


def run(coro):
    return asyncio.run(coro)


def test_ping_sipp_udp(sipp_udp):
    ok, code, rtt_ms, error = run(ping("127.0.0.1", sipp_udp, "udp", timeout=5))
    assert (ok, code, error) == (True, 200, None)
    assert rtt_ms is not None and rtt_ms > 0


def test_ping_sipp_tcp(sipp_tcp):
    result = run(ping("127.0.0.1", sipp_tcp, "tcp", timeout=5))
    assert result.ok and result.code == 200, result


def test_closed_udp_port_is_down(free_port):
    ok, code, rtt_ms, error = run(ping("127.0.0.1", free_port(), "udp", timeout=3))
    assert not ok and code is None and rtt_ms is None
    assert error == "connection refused"


def test_closed_tcp_port_is_down(free_port):
    result = run(ping("127.0.0.1", free_port(socket.SOCK_STREAM), "tcp", timeout=3))
    assert not result.ok and result.error == "connection refused"


def test_unresolvable_host_is_down():
    result = run(ping("no-such-carrier.invalid", 5060, timeout=5))
    assert not result.ok and result.error.startswith("cannot resolve no-such-carrier.invalid")


class FakeUdpPeer:
    """A UDP socket that answers each request through `reply(request) -> list[bytes]`."""

    def __init__(self, reply):
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.requests.append(data)
            for packet in self.reply(data):
                self.sock.sendto(packet, addr)

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def fake_peer():
    peers = []

    def make(reply):
        peer = FakeUdpPeer(reply)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


def response(request: bytes, status: str, call_id: str | None = None) -> bytes:
    headers = dict(line.split(": ", 1) for line in request.decode().split("\r\n")[1:] if ": " in line)
    return (
        f"SIP/2.0 {status}\r\nVia: {headers['Via']}\r\nFrom: {headers['From']}\r\nTo: {headers['To']};tag=x\r\n"
        f"Call-ID: {call_id or headers['Call-ID']}\r\nCSeq: {headers['CSeq']}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_garbage_answer_is_down(fake_peer):
    peer = fake_peer(lambda req: [b"HTTP/1.1 400 Bad Request\r\n\r\n"])
    ok, code, _, error = run(ping("127.0.0.1", peer.port, timeout=3))
    assert not ok and code is None
    assert error.startswith("invalid response: not a SIP response")
    binary = fake_peer(lambda req: [b"\xff\xfe\x00garbage"])
    result = run(ping("127.0.0.1", binary.port, timeout=3))
    assert not result.ok and result.error.startswith("invalid response")


def test_silent_peer_times_out_after_retransmissions(fake_peer):
    peer = fake_peer(lambda req: [])
    ok, code, rtt_ms, error = run(ping("127.0.0.1", peer.port, timeout=1.8))
    assert (ok, code, rtt_ms) == (False, None, None)
    assert error == "no response within 1.8 s"
    assert len(peer.requests) >= 2  # retransmitted on the RFC 3261 timers (0.5 s, then 1 s)
    assert len({r.split(b"Call-ID: ")[1].split(b"\r\n")[0] for r in peer.requests}) == 1


@pytest.mark.parametrize("status,code", [("404 Not Found", 404), ("405 Method Not Allowed", 405),
                                         ("403 Forbidden", 403), ("503 Service Unavailable", 503)])
def test_any_final_response_means_alive(fake_peer, status, code):
    peer = fake_peer(lambda req: [response(req, status)])
    result = run(ping("127.0.0.1", peer.port, timeout=3))
    assert result.ok and result.code == code and result.error is None


def test_provisional_and_foreign_responses_are_skipped(fake_peer):
    peer = fake_peer(lambda req: [
        response(req, "100 Trying"),
        response(req, "486 Busy Here", call_id="someone-else"),
        response(req, "200 OK"),
    ])
    result = run(ping("127.0.0.1", peer.port, timeout=3))
    assert result.ok and result.code == 200


def _one_shot_tcp_server(payload: bytes):
    """A TCP server that answers the first connection with `payload` and closes; returns (port, finish)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    port = server.getsockname()[1]

    def serve():
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65535)
                conn.sendall(payload)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def finish():
        thread.join(10)
        server.close()

    return port, finish


def test_tcp_garbage_is_down():
    port, finish = _one_shot_tcp_server(b"220 smtp.example.com ESMTP\r\n\r\n")
    try:
        result = run(ping("127.0.0.1", port, "tcp", timeout=3))
    finally:
        finish()
    assert not result.ok and result.error.startswith("invalid response")


def test_tls_to_plaintext_server_is_down():
    port, finish = _one_shot_tcp_server(b"SIP/2.0 400 Bad Request\r\n\r\n" * 4)
    try:
        result = run(ping("127.0.0.1", port, "tls", timeout=3))
    finally:
        finish()
    assert not result.ok and result.code is None
    assert result.error.startswith(("TLS error", "transport error")), result.error


def test_request_is_well_formed():
    req = build_options("sip.example.net", 5080, "udp", "10.0.0.5", 40000, call_id="abc@x", branch="z9hG4bK1",
                        tag="t1").decode()
    assert req.startswith("OPTIONS sip:sip.example.net:5080;transport=udp SIP/2.0\r\n")
    assert "Via: SIP/2.0/UDP 10.0.0.5:40000;branch=z9hG4bK1;rport\r\n" in req
    assert "CSeq: 1 OPTIONS\r\n" in req and req.endswith("Content-Length: 0\r\n\r\n")
    assert parse_status(b"SIP/2.0 200 OK\r\nCall-ID: abc@x\r\n\r\n", "abc@x") == 200
    assert parse_status(b"SIP/2.0 200 OK\r\ni: other\r\n\r\n", "abc@x") is None


def test_unknown_transport_is_rejected():
    with pytest.raises(ValueError):
        run(ping("127.0.0.1", 5060, "carrier-pigeon"))


def test_tracker_flips_down_after_n_failures_and_up_after_m_successes():
    tracker = HealthTracker(down_after=3, up_after=2)
    assert tracker.healthy
    assert [tracker.record(False), tracker.record(False)] == [None, None]
    assert tracker.record(True) is None  # a success resets the failure streak
    assert [tracker.record(False) for _ in range(3)] == [None, None, "down"]
    assert not tracker.healthy
    assert tracker.record(False) is None  # already down: no repeated transition
    assert tracker.record(True) is None
    assert tracker.record(False) is None  # success streak broken
    assert [tracker.record(True), tracker.record(True)] == [None, "up"]
    assert tracker.healthy and tracker.record(True) is None


def test_tracker_starting_down_and_single_step():
    tracker = HealthTracker(down_after=1, up_after=1, healthy=False)
    assert tracker.record(True) == "up"
    assert tracker.record(False) == "down"
    with pytest.raises(ValueError):
        HealthTracker(down_after=0)
