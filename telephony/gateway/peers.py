"""Another node's dead gateways: closed out by a supervisor that is still alive.

A supervisor closes out its own workers' calls (closeout.py). When a whole node goes (its
supervisor killed with its workers, the machine gone), nobody on it will: so every supervisor
keeps its node's heartbeat (``gw:node:{node}:alive``, EX 3) and, once a second, looks at the
other nodes' gateways. A gateway whose own heartbeat and whose node's heartbeat are both gone, and
that is not marked dead yet, is asked for SIP OPTIONS at its address every second: while it answers,
its node is only cut off from Redis (its calls go on and it reports them when it is back), and it is
left alone. Once it has not answered for UNANSWERED_S (its SIP thread may stall for a second when
Redis goes), one live supervisor claims it (``SET gw:{id}:reaper NX``) and closes it out like a dead
worker of its own: BYE/CANCEL to the carrier from this node's address, the
final events with reason ``node_died`` (duration up to the gateway's last heartbeat or the BYE),
slots back.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time

from core import keys
from telephony.sip_options import ping

from . import events as ev
from .closeout import close_out_gateway
from .store import Store

log = logging.getLogger("gateway.supervisor")

NODE_HEARTBEAT_S = 3
CLAIM_S = 60  # a claim outlives the close-out (BYE timeout); a reaper that died with it is replaced then
PROBE_TIMEOUT_S = 1.0
UNANSWERED_S = 3.0


class PeerWatch:
    def __init__(self, store: Store, node: str, bind: str | None, public_ip: str | None, bye_timeout: float):
        self.store, self.r, self.node = store, store.r, node
        self.bind, self.public_ip, self.bye_timeout = bind or "0.0.0.0", public_ip, bye_timeout
        self.closing: dict[str, threading.Thread] = {}
        self.cut_off: set[str] = set()  # gateways without heartbeats that still answer SIP (logged once)
        self.unanswered: dict[str, float] = {}  # gateway -> since when it has not answered SIP

    def beat(self) -> None:
        self.r.set(keys.node_alive_key(self.node), time.time(), ex=NODE_HEARTBEAT_S)

    def check(self) -> None:
        """Claim and close out the gateways of dead nodes (raises redis errors: the caller skips)."""
        self.closing = {gw: t for gw, t in self.closing.items() if t.is_alive()}
        ids = [i.decode() if isinstance(i, bytes) else i for i in self.r.smembers(keys.GATEWAYS_SET)]
        p = self.r.pipeline(transaction=False)
        for gateway_id in ids:
            p.exists(keys.gw_alive_key(gateway_id))
            p.hmget(keys.gw_key(gateway_id), "state", "updated_at", "public_ip", "sip_port")
            p.hget(keys.POOL_HASH, f"{gateway_id}:node")
        rows = p.execute()
        for i, gateway_id in enumerate(ids):
            alive, (state, updated, address, sip_port), node = rows[3 * i], rows[3 * i + 1], rows[3 * i + 2]
            node = node.decode() if isinstance(node, bytes) else node
            if alive:
                self.cut_off.discard(gateway_id)
                self.unanswered.pop(gateway_id, None)
            if alive or not node or node == self.node or gateway_id in self.closing:
                continue
            if (state or b"").decode() in ("dead", "stopped") or self.r.exists(keys.node_alive_key(node)):
                continue
            if answers_sip(address, sip_port):
                self.unanswered.pop(gateway_id, None)
                if gateway_id not in self.cut_off:
                    self.cut_off.add(gateway_id)
                    log.warning("[%s] node %s has no heartbeat but its gateway answers SIP: cut off from Redis, "
                                "its calls left to it", gateway_id, node)
                continue
            if time.monotonic() - self.unanswered.setdefault(gateway_id, time.monotonic()) < UNANSWERED_S:
                continue
            self.unanswered.pop(gateway_id, None)
            self.cut_off.discard(gateway_id)
            if not self.r.set(keys.gw_reaper_key(gateway_id), self.node, nx=True, ex=CLAIM_S):
                continue
            last_seen = min(time.time(), float(updated)) if updated else time.time()
            log.warning("[%s] node %s is gone: closing out its calls", gateway_id, node)
            self.closing[gateway_id] = threading.Thread(target=self.close_out, args=(gateway_id, last_seen),
                                                        name=f"reap-{gateway_id}", daemon=True)
            self.closing[gateway_id].start()

    def close_out(self, gateway_id: str, last_seen: float) -> None:
        try:
            closed = close_out_gateway(self.store, gateway_id, last_seen, (self.bind, 0), via_host=self.public_ip,
                                       reason=ev.REASON_NODE_DIED, bye_timeout=self.bye_timeout)
            self.r.hset(keys.gw_key(gateway_id), mapping={"active": 0, "state": "dead"})
            log.warning("[%s] closed out %d calls of a dead node", gateway_id, len(closed))
        except Exception:  # the claim expires and a supervisor tries again
            log.exception("[%s] close-out of a dead node's gateway failed", gateway_id)


def answers_sip(address: bytes | None, port: bytes | None) -> bool:
    """Whether a gateway answers SIP OPTIONS at its address (any final response)."""
    if not address or not port:
        return False
    return asyncio.run(ping(address.decode(), int(port), timeout=PROBE_TIMEOUT_S)).ok
