"""A cheap stand-in for the tenant's AI agent in bench/media_bridge.py.

Wire behaviour (per call, once its ``start`` message arrived: one
``{"event":"media","streamSid":"x","media":{"payload":"..."}}`` every ``chunk_ms`` carrying
``chunk_ms // 20`` tagged mu-law frames of 160 bytes, ``struct.pack("!HH", tag, seq)`` + 156 x 0x55;
reads the gateway's ``media`` messages: counts them, counts ``media.timestamp`` gaps, measures the round
trip of its own tagged frames), at a fraction of the CPU:

* it runs in a child process (this file, started with ``--child``) on uvloop, so its CPU is measured
  on its own (``cpu_seconds()``) and it never holds the bench process's GIL;
* one process-wide ticker (``loop.call_at`` on an absolute schedule) sends the next message of every
  started call in the same wake-up, instead of one timer per call;
* a raw asyncio ``Protocol`` speaks just enough RFC 6455 (server side): the HTTP Upgrade handshake,
  masked client frames (text/binary, continuation fragments, ping -> pong, close -> close reply),
  unmasked text frames out. Received media messages are parsed with byte searches, not json.loads.

API (the parent side, ``EchoAgent``)::

    agent = EchoAgent(chunk_ms=20)          # starts the child, returns once it listens
    agent.port                              # ws://127.0.0.1:<port>/ (any path)
    agent.conns, agent.rtt, agent.frames_in, agent.ts_gaps, agent.sent   # each one round trip to the child
    agent.stats()                           # all of them (+ "cpu") in one round trip
    agent.reset()                           # clears rtt, frames_in, ts_gaps, sent
    agent.cpu_seconds()                     # CPU (user+sys) the child used so far
    agent.stop()

Self-test: ``.venv/bin/python bench/echo_agent.py [--clients 20] [--seconds 5] [--phases 4]``
(measured when it replaced the in-process agent: 7 % vs 21 % of a core at 20 clients, 20 % vs 64 % at
80).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]  # the checkout (run as a file)

from bench.procstat import proc_cpu  # noqa: E402
from media.ws_client import GUID, apply_mask  # noqa: E402

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 1 << 20
MAX_WRITE_BUFFER = 256 * 1024  # a peer that stops reading: skip its messages rather than grow without bound
FILLER = b"\x55" * 156
RING = 1024  # sent_at slots per call (old Agent kept the last 500 frames)
MEDIA_PREFIX = b'{"event":"media","streamSid":"x","media":{"payload":"'
MEDIA_SUFFIX = b'"}}'
pack = struct.pack
b2a_base64 = binascii.b2a_base64


def _frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


# ------------------------------------------------------------------------------------------------
# child: the agent itself
# ------------------------------------------------------------------------------------------------
class _Server:
    def __init__(self, chunk_ms: int, phases: int):
        self.chunk_frames = max(1, chunk_ms // 20)
        self.period = 0.02 * self.chunk_frames
        self.phases = max(1, phases)
        self.conns: set[_Conn] = set()
        self.groups: list[list[_Conn]] = [[] for _ in range(self.phases)]  # started calls per phase
        self.next_tag = 1
        self.n_started = 0
        # one frame per message: the whole WebSocket frame but 8 base64 chars (tag, seq) is constant
        tail = base64.b64encode(b"\x55" * 154) + MEDIA_SUFFIX
        body_len = len(MEDIA_PREFIX) + 8 + len(tail)
        self.msg_head = _frame(OP_TEXT, b"")[:1] + pack("!BH", 126, body_len) + MEDIA_PREFIX
        self.msg_tail = tail
        self.reset()

    def reset(self) -> None:
        self.rtt: list[float] = []
        self.frames_in = 0
        self.ts_gaps = 0
        self.sent = 0

    def stats(self) -> dict:
        return {"rtt": self.rtt, "frames_in": self.frames_in, "ts_gaps": self.ts_gaps, "sent": self.sent,
                "conns": len(self.conns), "cpu": time.process_time()}

    # one ticker for every call: `phases` groups, a tick every period/phases, each tick serves one group
    def start_ticker(self, loop) -> None:
        self.loop = loop
        self.step = self.period / self.phases
        self.next_t = loop.time() + self.step
        self.phase = 0
        loop.call_at(self.next_t, self._tick)

    def _tick(self) -> None:
        loop = self.loop
        now = loop.time()
        group = self.groups[self.phase]
        self.phase = (self.phase + 1) % self.phases
        self.next_t += self.step
        due = 1
        # late by whole periods (a stall): catch up like the old per-call sender did, within reason
        while self.next_t + self.period <= now:
            self.next_t += self.period
            due += 1
        if due > 50:
            due, self.next_t = 1, now + self.step
        loop.call_at(self.next_t, self._tick)
        for c in tuple(group):  # a send can end a connection
            for _ in range(due):
                c.send_next()

    def add_started(self, c: _Conn) -> None:
        c.group = self.groups[self.n_started % self.phases]
        self.n_started += 1
        c.group.append(c)


class _Conn(asyncio.Protocol):
    __slots__ = ("srv", "transport", "buf", "upgraded", "tag", "seq", "sent_t", "sent_seq", "prev_ts",
                 "group", "frag", "closing", "write")

    def __init__(self, srv: _Server):
        self.srv = srv
        self.buf = b""
        self.upgraded = False
        self.tag = 0
        self.seq = 0
        self.sent_t = [0.0] * RING
        self.sent_seq = [-1] * RING
        self.prev_ts = None
        self.group = None
        self.frag: list[bytes] | None = None
        self.closing = False

    def connection_made(self, transport):
        self.transport = transport
        self.write = transport.write
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc):
        srv = self.srv
        srv.conns.discard(self)
        if self.group is not None:
            try:
                self.group.remove(self)
            except ValueError:
                pass
            self.group = None

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > 16384:
                    self.transport.abort()
                else:
                    self.buf = data
                return
            self._handshake(data[:end])
            data = data[end + 4:]
            if not self.upgraded:
                return
        # frames (typically exactly one per read)
        pos, n = 0, len(data)
        while n - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            hdr = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                hdr = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
                hdr = pos + 10
            if length > MAX_MESSAGE:
                self._close(1009)
                return
            if b1 & 0x80:  # masked (clients must mask)
                end = hdr + 4 + length
                if n < end:
                    break
                payload = apply_mask(data[hdr + 4:end], data[hdr:hdr + 4])
            else:
                end = hdr + length
                if n < end:
                    break
                payload = data[hdr:end]
            pos = end
            opcode = b0 & 0x0F
            if opcode == OP_TEXT or opcode == OP_BINARY:
                if self.frag is not None:
                    self._close(1002)
                    return
                if b0 & 0x80:
                    self._message(payload, now)
                else:
                    self.frag = [payload]
            elif opcode == OP_CONT:
                if self.frag is None:
                    self._close(1002)
                    return
                self.frag.append(payload)
                if sum(map(len, self.frag)) > MAX_MESSAGE:
                    self._close(1009)
                    return
                if b0 & 0x80:
                    msg, self.frag = b"".join(self.frag), None
                    self._message(msg, now)
            elif opcode == OP_PING:
                self.write(_frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                self._close(int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1000)
                return
            elif opcode != OP_PONG:
                self._close(1002)
                return
        if pos < n:
            self.buf = data[pos:]

    def _handshake(self, head: bytes) -> None:
        key = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        if not key:
            self.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()
            return
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self.upgraded = True
        srv = self.srv
        self.tag = srv.next_tag & 0xFFFF
        srv.next_tag += 1
        srv.conns.add(self)

    def _close(self, code: int) -> None:
        if not self.closing:
            self.closing = True
            if code in (1005, 1006, 1015) or code < 1000:
                code = 1000
            self.write(_frame(OP_CLOSE, struct.pack("!H", code)))
        self.transport.close()
        self.connection_lost(None)

    def _message(self, raw: bytes, now: float) -> None:
        if b'"media"' not in raw[:20]:
            if self.group is None and b'"start"' in raw[:20]:
                self.srv.add_started(self)
            return
        srv = self.srv
        # {"event":"media",...,"media":{...,"timestamp":"20","payload":"..."}}: byte searches,
        # json.loads as the fallback
        i = raw.find(b'"timestamp":"')
        j = raw.find(b'"payload":"')
        try:
            if i < 0 or j < 0:
                raise ValueError
            i += 13
            ts = int(raw[i:raw.index(b'"', i)])
            j += 11
            head = binascii.a2b_base64(raw[j:j + 12])  # the first 9 bytes: tag, seq, 3 filler bytes
        except (ValueError, binascii.Error):
            try:
                m = json.loads(raw)["media"]
                ts = int(m["timestamp"])
                head = base64.b64decode(m["payload"])[:9]
            except Exception:  # noqa: BLE001 - the old Agent's handler would end on this
                return
        prev = self.prev_ts
        if prev is not None and ts - prev != 20:
            srv.ts_gaps += (ts - prev) // 20 - 1
        self.prev_ts = ts
        srv.frames_in += 1
        if len(head) >= 8 and head[4:8] == b"\x55\x55\x55\x55":
            t_tag, t_seq = struct.unpack_from("!HH", head)
            if t_tag == self.tag:
                k = t_seq % RING
                if self.sent_seq[k] == t_seq:
                    self.sent_seq[k] = -1
                    srv.rtt.append(now - self.sent_t[k])

    def send_next(self) -> None:
        if self.closing or self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            return
        srv = self.srv
        seq = self.seq = self.seq + 1
        s16 = seq & 0xFFFF
        k = s16 % RING
        if srv.chunk_frames == 1:
            # base64 of (tag, seq, 2 filler bytes) + the constant base64 of the other 154 filler bytes
            self.sent_seq[k] = s16
            self.sent_t[k] = time.monotonic()
            self.write(srv.msg_head + b2a_base64(pack("!HHH", self.tag, s16, 0x5555), newline=False)
                       + srv.msg_tail)
            srv.sent += 1
            return
        frames = []
        sent_t, sent_seq = self.sent_t, self.sent_seq
        seq -= 1
        for _ in range(srv.chunk_frames):
            seq += 1
            s16 = seq & 0xFFFF
            k = s16 % RING
            sent_seq[k] = s16
            sent_t[k] = time.monotonic()
            frames.append(pack("!HH", self.tag, s16) + FILLER)
        self.seq = seq
        self.write(_frame(OP_TEXT, MEDIA_PREFIX + b2a_base64(b"".join(frames), newline=False) + MEDIA_SUFFIX))
        srv.sent += srv.chunk_frames


def _child_main(fd: int, chunk_ms: int, phases: int) -> None:
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    ctl = Connection(fd)
    srv = _Server(chunk_ms, phases)

    async def main():
        server = await loop.create_server(lambda: _Conn(srv), "127.0.0.1", 0, backlog=1024)
        srv.start_ticker(loop)
        ctl.send(("ready", server.sockets[0].getsockname()[1], os.getpid()))
        done = loop.create_future()

        def on_ctl():
            # the loop made the control socket non-blocking: a reply larger than its buffer (the
            # rtt list at 80+ calls) must still go out whole
            os.set_blocking(fd, True)
            try:
                cmd = ctl.recv()
            except (EOFError, OSError):
                cmd = "stop"
            if cmd == "reset":
                srv.reset()
                ctl.send(None)
            elif cmd == "stats":
                ctl.send(srv.stats())
            elif cmd == "counters":  # stats without the rtt list (cheap)
                ctl.send((srv.frames_in, srv.ts_gaps, srv.sent, len(srv.conns)))
            elif cmd == "rtt":
                ctl.send(srv.rtt)
            elif cmd == "cpu":
                ctl.send(time.process_time())
            else:
                if not done.done():
                    done.set_result(None)

        loop.add_reader(fd, on_ctl)
        await done
        loop.remove_reader(fd)
        server.close()
        for c in list(srv.conns):
            c.transport.abort()

    try:
        loop.run_until_complete(main())
    finally:
        try:
            ctl.send("stopped")
        except OSError:
            pass


# ------------------------------------------------------------------------------------------------
# parent: the handle the bench uses
# ------------------------------------------------------------------------------------------------
class EchoAgent:
    """The echo agent of bench/media_bridge.py; the agent runs in a child process."""

    def __init__(self, chunk_ms: int = 20, phases: int = 1):
        """``phases`` > 1 spreads the calls over that many send instants per period (a tick every
        period/phases serving 1/phases of the calls) instead of all calls sending in the same tick."""
        self.chunk_frames = max(1, chunk_ms // 20)
        parent, child = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", str(child.fileno()), str(chunk_ms),
             str(phases)],
            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL)
        child.close()
        self._ctl = Connection(parent.detach())
        self._lock = threading.Lock()
        if not self._ctl.poll(15):
            self.proc.kill()
            raise RuntimeError("echo agent child did not start")
        _, self.port, self.pid = self._ctl.recv()

    def _call(self, cmd: str):
        with self._lock:
            self._ctl.send(cmd)
            return self._ctl.recv()

    def stats(self) -> dict:
        """{"rtt": [s, ...], "frames_in", "ts_gaps", "sent", "conns", "cpu": child CPU seconds}"""
        return self._call("stats")

    def reset(self) -> None:
        self._call("reset")

    # each property is one round trip to the child; only `rtt` carries the list
    @property
    def conns(self) -> int:
        return self._call("counters")[3]

    @property
    def rtt(self) -> list[float]:
        return self._call("rtt")

    @property
    def frames_in(self) -> int:
        return self._call("counters")[0]

    @property
    def ts_gaps(self) -> int:
        return self._call("counters")[1]

    @property
    def sent(self) -> int:
        return self._call("counters")[2]

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) the agent process used so far."""
        try:
            return self._call("cpu")
        except (OSError, EOFError):
            return proc_cpu(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call("stop")
            except (OSError, EOFError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._ctl.close()


# ------------------------------------------------------------------------------------------------
# self-test: gateway-like clients in a separate process, the agent measured alone
# ------------------------------------------------------------------------------------------------
def _clients_main(port: int, n: int, seconds: float) -> None:
    """N gateway-like clients (websockets library): connected, start, then echo every agent frame back."""
    from websockets.asyncio.client import connect

    async def one(i: int):
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, max_queue=None) as ws:
            await ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
            await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": f"MZ{i}",
                                      "start": {"streamSid": f"MZ{i}", "tracks": ["inbound"]}}))
            k = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    raw = await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic()))
                except TimeoutError:
                    break
                payload = json.loads(raw)["media"]["payload"]
                # the gateway sends 20 ms frames: split a multi-frame chunk the way it would
                data = base64.b64decode(payload)
                for off in range(0, len(data), 160):
                    k += 1
                    await ws.send(
                        f'{{"event":"media","sequenceNumber":"{k + 1}","streamSid":"MZ{i}","media":'
                        f'{{"track":"inbound","chunk":"{k}","timestamp":"{20 * k}","payload":"'
                        f'{base64.b64encode(data[off:off + 160]).decode()}"}}}}')

    async def main():
        await asyncio.gather(*(one(i) for i in range(n)))

    asyncio.run(main())


def _pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))], 3)


def _selftest(n: int, seconds: float, chunk_ms: int, phases: int) -> dict:
    agent = EchoAgent(chunk_ms, phases)
    cpu = agent.cpu_seconds
    snap = agent.stats

    def conns():
        return agent.conns
    clients = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--clients-child", str(agent.port),
                                str(n), str(seconds + 4)])
    try:
        deadline = time.monotonic() + 15
        while conns() < n and time.monotonic() < deadline:
            time.sleep(0.1)
        peak = conns()
        time.sleep(1.0)
        agent.reset()
        c0, t0 = cpu(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu(), time.monotonic()
        s = snap()
        rtt = [x * 1000 for x in s["rtt"]]
        dt = t1 - t0
        res = {"agent": f"EchoAgent(phases={phases})", "clients": n,
               "conns": peak, "frames_in": s["frames_in"], "frames_sent": s["sent"],
               "frames_in_per_call_s": round(s["frames_in"] / dt / n, 2),
               "rtt_ms": {"p50": _pct(rtt, 50), "p99": _pct(rtt, 99), "samples": len(rtt)},
               "ts_gaps": s["ts_gaps"], "agent_cpu_percent_of_core": round(100 * (c1 - c0) / dt, 1)}
    finally:
        clients.wait(30)
        agent.stop()
    return res


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--clients-child":
        _clients_main(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        ap = argparse.ArgumentParser(description="EchoAgent self-test")
        ap.add_argument("--clients", type=int, default=20)
        ap.add_argument("--seconds", type=float, default=5.0)
        ap.add_argument("--chunk-ms", type=int, default=20)
        ap.add_argument("--phases", type=int, default=1)
        a = ap.parse_args()
        print(json.dumps(_selftest(a.clients, a.seconds, a.chunk_ms, a.phases)))
