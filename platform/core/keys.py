"""Every Redis key name the platform uses, in one place (stdlib only: the SIP gateway imports it too).

Code never writes a key name inline, and Lua scripts never build one: a script gets every key it
touches as KEYS (tests/test_redis_keys.py checks both). What the keys hold is described where they
are used: the gateway's in docs/gateway.md, the metrics' in telephony/metrics/buckets.py. (Keys of
Django's cache, such as the sign-in throttle's, belong to the cache, which prefixes them.)

Redis Cluster: a script's KEYS must share one slot there. The gateway's scripts touch a call and
its gateway (and the events stream), the caps' a carrier and a tenant: entities that no hash tag
can put in one slot, so this layout is for one Redis server (or a primary with replicas).
"""
from __future__ import annotations

# ---- gateway pool (telephony/gateway) ---------------------------------------------------------
EVENTS_STREAM = "calls:events"  # every call event; consumer group "recorder"
RECORDERS = "calls:recorders"  # sorted set: recorder consumer name -> when it last read (unix time)
# Calls waiting for a gateway: one list per tenant (and region), served round-robin across tenants
# (the ring lists the tenants with calls waiting), so one tenant's burst does not delay another's.
ORIGINATE_QUEUE = "gw:originate"
# one token per queued originate: gateways with a free slot BLPOP it to learn there is work (no polling)
ORIGINATE_WAKE = "gw:originate:wake"
GATEWAYS_SET = "gw:all"  # every gateway id that ever announced itself
POOL_HASH = "gw:pool"  # supervisor bookkeeping: "{gateway_id}:restarts" -> count
INBOUND_REJECTED = "gw:inbound:rejected"  # counter of INVITEs refused for their source address
MEDIA_NODES_SET = "gw:media"  # nodes whose supervisor publishes its media hosts
CARRIER_ADDRESSES = "carriers:addresses"  # set of IP strings allowed to send us INVITEs
NUMBER_ROUTES = "numbers:routes"  # hash E.164 -> JSON {"tenant":..., "stream_url":..., ...}


def api_key_failures(address: str) -> str:
    """Failed API-key attempts from one client address (a counter that expires with its window)."""
    return f"api:key-failures:{address}"


def call_key(call_id: str) -> str:
    """A call's live state (hash): its gateway, state, dialog, slot keys, final event type."""
    return f"call:{call_id}"


def gw_key(gateway_id: str) -> str:
    return f"gw:{gateway_id}"


def gw_alive_key(gateway_id: str) -> str:
    return f"gw:{gateway_id}:alive"


def gw_calls_key(gateway_id: str) -> str:
    return f"gw:{gateway_id}:calls"


def gw_commands_key(gateway_id: str) -> str:
    return f"gw:{gateway_id}:commands"


def gw_reaper_key(gateway_id: str) -> str:
    """Which live node closes out a dead node's gateway (SET NX: exactly one)."""
    return f"gw:{gateway_id}:reaper"


def media_hosts_key(node: str) -> str:
    """A node's media hosts (hash name -> JSON {pid, alive, restarts}), written by its supervisor
    every second, EX 5: gone = that node's supervisor is gone."""
    return f"gw:media:{node}"


def region_alive_key(region: str) -> str:
    """Set (EX 3) by every live gateway of a region: calls for the region wait only while it exists."""
    return f"gw:region:{region}:alive"


def node_alive_key(node: str) -> str:
    """A node's supervisor heartbeat (EX 3): gone = nobody on that node closes out its workers' calls."""
    return f"gw:node:{node}:alive"


def originate_queue(region: str = "") -> str:
    """Where a region's gateways take calls from (``gw:originate:{region}``, the prefix of its tenant
    queues, ring and wake list); "" = the shared queue every gateway takes from (calls whose
    carriers have no region)."""
    return f"{ORIGINATE_QUEUE}:{region}" if region else ORIGINATE_QUEUE


def originate_wake(region: str = "") -> str:
    return f"{originate_queue(region)}:wake" if region else ORIGINATE_WAKE


def tenant_queue(region: str, tenant: str) -> str:
    """One tenant's calls waiting for a gateway of ``region`` ("": the shared queue), oldest first."""
    return f"{originate_queue(region)}:tenant:{tenant}"


def originate_ring(region: str = "") -> str:
    """The tenants with calls waiting in the region's queue, each once, in the order they are served."""
    return f"{originate_queue(region)}:ring"


def originate_depth(region: str = "") -> str:
    """How many calls wait in the region's queue, all tenants together (for the wake tokens)."""
    return f"{originate_queue(region)}:depth"


def originate_held(region: str = "") -> str:
    """Tenants held back in the region's queue (sorted set: tenant -> until, ms of Redis time): a call
    of theirs met full caps and went back to wait; gateways skip them until then."""
    return f"{originate_queue(region)}:held"


# ---- caps (telephony/leases.py, telephony/gateway/call_limits.py) -----------------------------
def carrier_calls_key(carrier_id) -> str:
    return f"lim:carrier:{carrier_id}:calls"


def carrier_cps_key(carrier_id) -> str:
    return f"lim:carrier:{carrier_id}:cps"


def tenant_calls_key(tenant: str) -> str:
    return f"lim:tenant:{tenant}:calls"


# ---- campaign dialer (campaigns/dialer.py) ----------------------------------------------------
# The tenant schemas with campaign activity (campaigns/activity.py): sorted set, member = schema,
# score = Redis time (ms) of its latest mark. The every-second dispatch visits these, not every tenant.
CAMPAIGN_ACTIVITY = "dialer:active-schemas"
# Set NX PX DIALER_FULL_SCAN_S by the dispatch that visits every tenant: while it lives, no other does.
CAMPAIGN_FULL_SCAN = "dialer:full-scan"


def dialer_lease_key(schema: str, campaign_id: int, slot: int) -> str:
    """Which worker runs a campaign's dialing loop `slot` (a lease of telephony.leases, limit 1)."""
    return f"dialer:{schema}:{campaign_id}:{slot}:lease"


def dialer_pace_key(schema: str, campaign_id: int, slot: int) -> str:
    return f"dialer:{schema}:{campaign_id}:{slot}:next"


def dialer_held_key(schema: str, campaign_id: int) -> str:
    """Set by slot 0 for REFUSAL_BACKOFF_S when a cap refused a call: every slot holds its dialing."""
    return f"dialer:{schema}:{campaign_id}:held"


# ---- media: agents that connect in (media/stream_relay.py) ------------------------------------
def agent_stream_key(call_sid: str) -> str:
    """Set NX when an agent connects to a call's stream: one agent per call."""
    return f"stream:{call_sid}:agent"


# ---- call metrics (telephony/metrics) ---------------------------------------------------------
METRICS_TOTALS = "m:total"
PLATFORM_VERSION = "m:ver:p"
PLATFORM_ACTIVE = "m:active:p"


def tenant_rollup(schema: str, res: str, bucket_start: int) -> str:
    return f"m:t:{schema}:{res}:{bucket_start}"


def platform_rollup(res: str, bucket_start: int) -> str:
    return f"m:p:{res}:{bucket_start}"


def tenant_active(schema: str) -> str:
    return f"m:active:t:{schema}"


def campaign_active(schema: str, campaign: str) -> str:
    return f"m:active:camp:{schema}:{campaign}"


def carrier_active(carrier: str) -> str:
    return f"m:active:car:{carrier}"


def region_active(region: str) -> str:
    return f"m:active:reg:{region}"


def latest_calls(schema: str) -> str:
    return f"m:latest:{schema}"


def call_quality(schema: str, sid: str) -> str:
    return f"m:q:{schema}:{sid}"


def tenant_version(schema: str) -> str:
    return f"m:ver:{schema}"


def seen(schema: str, sid: str, what: str) -> str:
    return f"m:seen:{schema}:{sid}:{what}"
