"""Runs and watches a pool of gateway worker processes on one node.

    python -m telephony.gateway.supervisor --processes N --redis-url URL [--base-sip-port P]

- starts M media hosts (``--media-hosts``, one per core by default: media/host.py runs the audio
  of bridged calls for many workers, which costs far less CPU than a bridge in every 4-call
  worker), then N workers (gateway ids ``{node}-{n}``), each on its own SIP port (P+n, or any free
  port) and its own RTP port range, worker n linked to host n mod M;
- restarts a media host that exits (the calls it carried end with ``media_error``);
- restarts a worker that exits, or whose heartbeat key ``gw:{id}:alive`` expired (it is killed
  first), with a back-off when it keeps dying at start; counts restarts in ``gw:pool``
  (field ``{id}:restarts``);
- when a worker died, ends every call it held (``gw:{id}:calls``) at the carrier (BYE / CANCEL from
  the dialog the worker kept in Redis, sent from the worker's own SIP port) and gives it its final
  event with reason ``gateway_died``, holding the call's slots until then (closeout.py); the worker
  is restarted once that is done;
- never kills a worker as stale because of a Redis outage: after Redis could not be reached, or
  came back empty (a restart), workers have ``--redis-grace`` seconds to write their heartbeat again;
- SIGTERM/SIGINT: forwards SIGTERM to the workers, waits for their clean exit (they hang up their
  calls and publish final events), closes out whatever a worker could not, exits 0.

Every line a worker prints (Python logging and pjsua's own) is re-printed prefixed with its id.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

import redis

from core import cli, keys

from .closeout import close_out_gateway
from .peers import PeerWatch
from .store import Store

log = logging.getLogger("gateway.supervisor")


@dataclass
class Slot:
    index: int
    gateway_id: str
    sip_port: int
    rtp_port: int
    proc: subprocess.Popen | None = None
    started: float = 0.0
    seen_alive: bool = False
    restarts: int = 0
    fast_failures: int = 0
    restart_at: float = 0.0
    closer: threading.Thread | None = None  # closing out the calls of its last process


@dataclass
class MediaSlot:
    index: int
    name: str
    socket_path: str
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    restart_at: float = 0.0


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except Exception:
        pass


def _pump(prefix: str, stream, out) -> None:
    for line in iter(stream.readline, b""):
        try:
            out.write(f"{prefix} | {line.decode(errors='replace').rstrip()}\n")
            out.flush()
        except (ValueError, OSError):
            break
    stream.close()


def _start_child(name: str, cmd: list[str]) -> subprocess.Popen:
    """A worker or media host: in its own session (a terminal's Ctrl-C reaches only the supervisor,
    which stops them in order), SIGTERM if the supervisor itself is killed (PDEATHSIG), and every line
    it prints re-printed prefixed with ``name``."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=_die_with_parent)
    threading.Thread(target=_pump, args=(name, proc.stdout, sys.stderr), daemon=True).start()
    return proc


class Supervisor:
    def __init__(self, args):
        self.args = args
        self.node = args.node or socket.gethostname().split(".")[0]
        self.r = redis.Redis.from_url(args.redis_url, socket_timeout=5, socket_connect_timeout=5)
        self.store = Store(self.r)
        self.peers = PeerWatch(self.store, self.node, args.bind, args.public_ip, args.bye_timeout)
        self.peers_checked = 0.0
        self.media_published = 0.0
        self.stopping = False
        self.redis_grace_until = 0.0  # no worker is stale before then (Redis was away or restarted)
        self.slots = [
            Slot(i, f"{self.node}-{i}",
                 args.base_sip_port + i if args.base_sip_port else 0,
                 args.base_rtp_port + i * args.rtp_ports_per_worker)
            for i in range(args.processes)
        ]
        self.media_dir = tempfile.mkdtemp(prefix="vp-media-") if args.media_hosts > 0 else None
        self.media = [MediaSlot(i, f"{self.node}-media-{i}", os.path.join(self.media_dir, f"host-{i}.sock"))
                      for i in range(max(0, args.media_hosts))]

    def worker_cmd(self, slot: Slot) -> list[str]:
        a = self.args
        cmd = [sys.executable, "-m", "telephony.gateway.worker", "--gateway-id", slot.gateway_id,
               "--redis-url", a.redis_url, "--sip-port", str(slot.sip_port),
               "--rtp-port", str(slot.rtp_port), "--rtp-port-range", str(a.rtp_ports_per_worker)]
        if a.public_ip:
            cmd += ["--public-ip", a.public_ip]
        if a.bind:
            cmd += ["--bind", a.bind]
        if a.region:
            cmd += ["--region", a.region]
        if self.media:
            cmd += ["--media-host", self.media[slot.index % len(self.media)].socket_path]
        return cmd + list(a.worker_args or [])

    # ---- media hosts ----------------------------------------------------------------------------------
    def spawn_media(self, m: MediaSlot) -> None:
        cmd = [sys.executable, "-m", "media.host", "--socket", m.socket_path,
               "--name", m.name, "--log-level", self.args.log_level]
        m.proc = _start_child(m.name, cmd)
        m.started = time.monotonic()
        log.info("[%s] started media host pid %s", m.name, m.proc.pid)

    def wait_media_ready(self, timeout: float = 15.0) -> None:
        """Workers fall back to bridging in-process when their host is not there: wait for the sockets."""
        deadline = time.monotonic() + timeout
        for m in self.media:
            while not os.path.exists(m.socket_path) and time.monotonic() < deadline:
                if m.proc is None or m.proc.poll() is not None:
                    break
                time.sleep(0.05)
            if not os.path.exists(m.socket_path):
                log.error("[%s] media host not ready: its workers bridge calls themselves", m.name)

    def check_media(self, m: MediaSlot) -> None:
        now = time.monotonic()
        if m.proc is None:
            if not self.stopping and now >= m.restart_at:
                self.spawn_media(m)
            return
        if m.proc.poll() is None:
            return
        log.error("[%s] media host pid %s exited (code %s): its calls ended, restarting", m.name, m.proc.pid,
                  m.proc.returncode)
        fast = now - m.started < self.args.startup_grace
        m.proc = None
        m.restarts += 1
        m.restart_at = now + (min(30.0, 0.5 * 2 ** min(m.restarts, 6)) if fast else 0.0)

    def spawn(self, slot: Slot) -> None:
        slot.proc = _start_child(slot.gateway_id, self.worker_cmd(slot))
        slot.started = time.monotonic()
        slot.seen_alive = False
        try:
            self.r.hset(keys.POOL_HASH, mapping={f"{slot.gateway_id}:pid": slot.proc.pid,
                                               f"{slot.gateway_id}:node": self.node})
        except redis.RedisError as exc:
            log.error("[%s] redis: %s", slot.gateway_id, exc)
        log.info("[%s] started worker pid %s (sip port %s)", slot.gateway_id, slot.proc.pid,
                 slot.sip_port or "any")

    def close_out(self, slot: Slot, died_at: float, deadline: float | None = None) -> None:
        """End the calls of the slot's dead process (closeout.py), retried until Redis answers (or
        ``deadline``, a monotonic time)."""
        failing = False
        while deadline is None or time.monotonic() < deadline:
            try:
                port = int(self.r.hget(keys.gw_key(slot.gateway_id), "sip_port") or slot.sip_port or 0)
                closed = close_out_gateway(self.store, slot.gateway_id, died_at,
                                           (self.args.bind or "0.0.0.0", port), via_host=self.args.public_ip,
                                           bye_timeout=self.args.bye_timeout)
                self.r.delete(keys.gw_alive_key(slot.gateway_id))
                self.r.hset(keys.gw_key(slot.gateway_id), mapping={"active": 0, "state": "dead"})
                if closed:
                    log.warning("[%s] closed out %d calls: %s", slot.gateway_id, len(closed), " ".join(closed))
                return
            except redis.RedisError as exc:
                if not failing:
                    log.error("[%s] close-out waits for redis (%s)", slot.gateway_id, exc)
                failing = True
                time.sleep(0.5)
        log.error("[%s] calls not closed out: redis unreachable", slot.gateway_id)

    def start_close_out(self, slot: Slot, died_at: float) -> None:
        """In a thread of its own: BYEs wait for the carriers' answers; the other workers are
        watched meanwhile and this one is restarted when its calls are closed out."""
        slot.closer = threading.Thread(target=self.close_out, args=(slot, died_at),
                                       name=f"close-{slot.gateway_id}", daemon=True)
        slot.closer.start()

    def last_seen(self, slot: Slot) -> float:
        """When a worker killed for a stale heartbeat was last known alive (its hash's updated_at)."""
        try:
            updated = self.r.hget(keys.gw_key(slot.gateway_id), "updated_at")
            return min(time.time(), float(updated)) if updated else time.time()
        except (redis.RedisError, ValueError):
            return time.time()

    def on_exit(self, slot: Slot, why: str, died_at: float | None = None) -> None:
        rc = slot.proc.returncode if slot.proc else None
        log.warning("[%s] worker pid %s %s (exit code %s)", slot.gateway_id,
                    slot.proc.pid if slot.proc else None, why, rc)
        slot.proc = None
        self.start_close_out(slot, died_at or time.time())
        if self.stopping:
            return
        slot.restarts += 1
        try:
            self.r.hincrby(keys.POOL_HASH, f"{slot.gateway_id}:restarts", 1)
        except redis.RedisError:
            pass
        if time.monotonic() - slot.started < self.args.startup_grace:
            slot.fast_failures += 1
        else:
            slot.fast_failures = 0
        delay = 0.0 if slot.fast_failures <= 1 else min(30.0, 0.5 * 2 ** (slot.fast_failures - 1))
        slot.restart_at = time.monotonic() + delay
        if delay:
            log.warning("[%s] failing at start, restarting in %.1fs", slot.gateway_id, delay)

    def heartbeats(self) -> dict[str, bool] | None:
        """{gateway id: heartbeat present} of the running workers; None while Redis cannot tell
        (unreachable, or just back: then the workers get ``--redis-grace`` s to write it again)."""
        now = time.monotonic()
        running = [slot for slot in self.slots if slot.proc is not None]
        try:
            p = self.r.pipeline(transaction=False)
            p.hget(keys.POOL_HASH, f"supervisor:{self.node}")
            for slot in running:
                p.exists(keys.gw_alive_key(slot.gateway_id))
            marker, *alive = p.execute()
            if marker is None:  # Redis lost its data (restarted empty): say again who we run
                mapping = {f"supervisor:{self.node}": os.getpid()}
                for slot in running:
                    mapping.update({f"{slot.gateway_id}:pid": slot.proc.pid, f"{slot.gateway_id}:node": self.node,
                                    f"{slot.gateway_id}:restarts": slot.restarts})
                self.r.hset(keys.POOL_HASH, mapping=mapping)
                if now >= self.redis_grace_until:
                    log.warning("redis restarted empty: workers re-assert their calls")
                self.redis_grace_until = now + self.args.redis_grace
        except redis.RedisError as exc:
            if now >= self.redis_grace_until:
                log.error("redis unreachable (%s): no worker is judged by its heartbeat meanwhile", exc)
            self.redis_grace_until = now + self.args.redis_grace
            return None
        beats = {slot.gateway_id: bool(a) for slot, a in zip(running, alive, strict=True)}
        return None if now < self.redis_grace_until and not all(beats.values()) else beats

    def check(self, slot: Slot, beats: dict[str, bool] | None) -> None:
        now = time.monotonic()
        if slot.closer is not None:
            if slot.closer.is_alive():
                return  # its calls are being ended: restarted after that
            slot.closer = None
        if slot.proc is None:
            if not self.stopping and now >= slot.restart_at:
                self.spawn(slot)
            return
        if slot.proc.poll() is not None:
            self.on_exit(slot, "exited")
            return
        if beats is None or slot.gateway_id not in beats:
            return  # cannot tell: never kill on a Redis outage
        if beats[slot.gateway_id]:
            slot.seen_alive = True
        elif (slot.seen_alive or now - slot.started > self.args.startup_grace) and not self.stopping:
            log.error("[%s] heartbeat stale: killing pid %s", slot.gateway_id, slot.proc.pid)
            slot.proc.kill()
            slot.proc.wait()
            self.on_exit(slot, "killed (stale heartbeat)", self.last_seen(slot))

    def run(self) -> int:
        for m in self.media:
            self.spawn_media(m)
        self.wait_media_ready()
        for slot in self.slots:  # calls left by a previous run of the same ids
            try:
                if not self.r.exists(keys.gw_alive_key(slot.gateway_id)):
                    self.close_out(slot, self.last_seen(slot), deadline=time.monotonic() + 15)
            except redis.RedisError as exc:
                log.error("redis: %s", exc)
            self.spawn(slot)
        self.r.hset(keys.POOL_HASH, mapping={f"supervisor:{self.node}": os.getpid()})
        while not self.stopping:
            for m in self.media:
                self.check_media(m)
            beats = self.heartbeats()
            for slot in self.slots:
                self.check(slot, beats)
            self.watch_peers(beats is not None)
            self.publish_media()
            time.sleep(self.args.check_interval)
        return self.stop()

    def publish_media(self) -> None:
        """The media hosts' state for /healthz (core.keys.media_hosts_key), once a second."""
        if not self.media or time.monotonic() - self.media_published < 1.0:
            return
        self.media_published = time.monotonic()
        state = {m.name: json.dumps({"pid": m.proc.pid if m.proc else None,
                                     "alive": m.proc is not None and m.proc.poll() is None, "restarts": m.restarts})
                 for m in self.media}
        try:
            p = self.r.pipeline(transaction=False)
            p.hset(keys.media_hosts_key(self.node), mapping=state)
            p.expire(keys.media_hosts_key(self.node), 5)
            p.sadd(keys.MEDIA_NODES_SET, self.node)
            p.execute()
        except redis.RedisError:
            pass  # heartbeats() says so; the hosts' state is published again once Redis is back

    def watch_peers(self, redis_sure: bool) -> None:
        """This node's heartbeat; once a second, the gateways of nodes that died (peers.py)."""
        try:
            self.peers.beat()
            if redis_sure and time.monotonic() - self.peers_checked >= 1.0:
                self.peers_checked = time.monotonic()
                self.peers.check()
        except redis.RedisError:
            pass  # heartbeats() has said so; a Redis outage never gets a node taken for dead

    def stop(self) -> int:
        log.info("stopping %d workers", sum(1 for s in self.slots if s.proc))
        for slot in self.slots:
            if slot.proc and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.args.stop_timeout
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("[%s] did not stop in time: killing", slot.gateway_id)
                slot.proc.kill()
                slot.proc.wait()
            if slot.proc.returncode != 0:
                log.warning("[%s] exit code %s", slot.gateway_id, slot.proc.returncode)
            self.close_out(slot, time.time(), deadline=time.monotonic() + 10)  # no-op after a clean exit
            slot.proc = None
        for slot in self.slots:
            if slot.closer is not None:
                slot.closer.join(self.args.bye_timeout + 2)
        self.stop_media()
        log.info("stopped")
        return 0


    def stop_media(self) -> None:
        """After the workers: they have closed their calls' streams, so the hosts only drain."""
        for m in self.media:
            if m.proc and m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
        for m in self.media:
            if m.proc is None:
                continue
            try:
                m.proc.wait(10)
            except subprocess.TimeoutExpired:
                log.error("[%s] did not stop in time: killing", m.name)
                m.proc.kill()
                m.proc.wait()
            m.proc = None
        if self.media_dir:
            shutil.rmtree(self.media_dir, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Supervise a pool of gateway worker processes")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    p.add_argument("--base-sip-port", type=int, default=0, help="worker n listens on P+n (0 = any free)")
    p.add_argument("--base-rtp-port", type=int, default=20000)
    p.add_argument("--rtp-ports-per-worker", type=int, default=200)
    p.add_argument("--public-ip", default=None)
    p.add_argument("--bind", default=None)
    p.add_argument("--region", default=os.environ.get("NODE_REGION", ""),
                   help="the node's region (its workers place the calls of that region's carriers)")
    p.add_argument("--media-hosts", type=int, default=os.cpu_count() or 1,
                   help="media host processes for bridged calls' audio (0 = each worker bridges its own)")
    p.add_argument("--node", default=None, help="node name used in gateway ids (default hostname)")
    p.add_argument("--check-interval", type=float, default=0.2)
    p.add_argument("--startup-grace", type=float, default=10.0,
                   help="seconds a new worker has to show a heartbeat")
    p.add_argument("--stop-timeout", type=float, default=15.0)
    p.add_argument("--redis-grace", type=float, default=5.0,
                   help="after Redis was unreachable or restarted, seconds workers have to write their heartbeat again")
    p.add_argument("--bye-timeout", type=float, default=8.0,
                   help="how long a dead worker's BYEs/CANCELs wait for the carrier before its slots are released")
    p.add_argument("worker_args", nargs="*", help="extra worker arguments, after --")
    args = cli.parse_args(p, argv, lambda a: "supervisor", needs_redis=True)
    sup = Supervisor(args)
    return cli.run_until_signalled(sup.run, lambda: setattr(sup, "stopping", True))


if __name__ == "__main__":
    sys.exit(main())
