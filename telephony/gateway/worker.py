"""One media-gateway process: a pjsua2 Endpoint, one UDP SIP transport, calls driven from Redis.

    python -m telephony.gateway.worker --gateway-id ID --redis-url URL [--sip-port N] [--public-ip IP]

Threading: pjsua2 runs with threadCnt=0 / mainThreadOnly=True, so every SIP event and every Python
callback runs in the one main thread that calls ``libHandleEvents``. That same loop pops originate
commands, checks call timers and writes the heartbeat. Callbacks only record state and queue Redis
writes; nothing in them waits on the network except cheap Redis calls made from this same thread.
One helper thread (``CommandListener``, no pjsua2) blocks on Redis for this worker's commands and
for originate wake-ups and wakes the main loop at once; another (``HostLink``) reads the media
host's messages. pjsua's RTP is polled on the main thread too (no media thread), and the conference
clock thread runs only while an answered call is not bridged (``set_sound_clock``). The audio of
bridged calls runs in a media host (media/host.py), not here.

This module must not import Django (the gateway stays small). See docs/gateway.md.
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import cast

import pjsua2 as pj

from core import cli, keys

from . import dialog
from . import events as ev
from . import miniredis as redis  # not redis-py: see miniredis.py (memory)
from .call_limits import CallLimits
from .contract import CarrierLeg, OriginateCommand
from .media_bridge import MediaBridge
from .pj_errors import PJSUA_MAX_ACC, PJSUA_MAX_CALLS, PjsipLog, describe
from .store import CAP_HOLD_MS, Store, _s
from .transfers import Transfers

log = logging.getLogger("gateway")

MAX_CRED_ACCOUNTS = PJSUA_MAX_ACC - 2  # the default account + one spare
CARRIER_FULL = "carrier at capacity"  # the sip_reason of a leg its caps refused
PJSIP_T1_MS, PJSIP_T2_MS, PJSIP_T4_MS = 500, 4000, 5000  # RFC 3261 defaults, unchanged

# A call that goes as planned: logged at DEBUG (its five lines at INFO were about a fifth of the
# worker's CPU per call, and the supervisor's re-printing them came on top); the events are in the
# stream anyway. Failed legs, failed calls and the rest stay INFO.
ROUTINE_EVENTS = frozenset((ev.INITIATED, ev.LEG_STARTED, ev.RINGING, ev.ANSWERED, ev.COMPLETED))

# headers an originate command may not set
RESERVED_HEADERS = {"via", "from", "to", "call-id", "cseq", "contact", "content-type", "content-length",
                    "max-forwards", "route", "record-route", "authorization", "proxy-authorization"}


@dataclass
class Session:
    """One logical call (all its carrier legs, or one inbound call)."""

    call_id: str
    direction: str
    cmd: OriginateCommand = field(default_factory=lambda: cast(OriginateCommand, {}))  # inbound: none
    legs: list[CarrierLeg] = field(default_factory=list)
    leg: int = -1
    pjcall: GatewayCall | None = None
    state: str = "new"  # new, dialing, ringing, answered, ended
    leg_start_pending: bool = False
    leg_started_at: float = 0.0  # monotonic
    leg_started_wall: float = 0.0
    got_provisional: bool = False
    early_saved: bool = False  # this leg's INVITE kept in Redis, for a CANCEL if the worker dies
    ringing_sent: bool = False
    pdd_ms: float | None = None
    setup_ms: float | None = None
    answered_wall: float = 0.0
    answered_mono: float = 0.0
    ring_timeout: float = 30.0
    provisional_timeout: float = 5.0
    max_duration: float = 3600.0
    hangup_reason: str | None = None  # set when the platform ends the call/leg
    hangup_sent_at: float = 0.0
    tenant: str | None = None
    sip_call_id: str | None = None  # SIP Call-ID of the current leg
    extra: dict = field(default_factory=dict)  # fields copied into every event (from, to, route...)
    held: list = field(default_factory=list)  # concurrency slots (carrier, tenant) of the current leg
    admitted_leg: int = -1  # the leg that passed the caps (a CPS grant is taken once per leg)
    not_before: float = 0.0  # monotonic: the carrier's CPS pacing holds the leg until then
    # every field written to call:{id} so far: written again after a Redis outage (reassert_calls)
    redis_state: dict = field(default_factory=dict)
    invite: str = ""  # inbound: the caller's INVITE (its Contact and Record-Route make our dialog)
    invite_src: str = ""  # ... and the address it came from
    rtp_seen_at: float = 0.0  # unbridged answered calls: monotonic time RTP last came in
    rtp_count: int = -1  # ... and pjsua's count of received RTP packets then
    rtp_checked_at: float = 0.0
    # an RTP timeout: when the far end was last heard (unix time), the call's true end
    heard_until: float = 0.0
    twiml: list | None = None  # the TwiML program the platform sent before the answer, run from it
    refused_as: str = ""  # inbound: the outcome of a call the gateway refused unanswered (<Reject>, no TwiML)

    @property
    def carrier_id(self):
        if 0 <= self.leg < len(self.legs):
            return self.legs[self.leg].get("carrier_id")
        return None


def _free_now(call: GatewayCall) -> None:
    """Delete the C++ Call inside its DISCONNECTED callback, as pjsua2 allows, whatever Python still
    refers to the wrapper. ~Call() hangs up whichever call holds its slot id: run later (when a
    reference cycle or a traceback let go of the wrapper, on any thread), it hung up the call that
    had taken the slot since (measured: a campaign call left "answered" with no BYE to follow)."""
    if call.thisown:
        pj.Call.__swig_destroy__(call)
        call.thisown = False


class GatewayCall(pj.Call):
    def __init__(self, worker: Worker, acc: pj.Account, session: Session | None,
                 call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(acc, call_id)
        self.worker = worker
        self.session = session
        self.disconnected = False
        self.hangup_done = False

    def onCallState(self, prm):
        try:
            self.worker.on_call_state(self)
        except Exception:  # never let an exception cross into pjsua
            log.exception("onCallState")

    def onCallTsxState(self, prm):
        try:
            s = self.session
            if s is None or s.pjcall is not self:
                return
            e = prm.e
            if e.type != pj.PJSIP_EVENT_TSX_STATE:
                return
            tsx = e.body.tsxState.tsx
            if tsx.method != "INVITE":
                return
            code = tsx.statusCode
            # Not got_provisional: a 18x with no 100 before it sets that first, in onCallState(EARLY).
            if 100 <= code < 200 and not s.early_saved:
                s.got_provisional = True
                if e.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG:
                    s.early_saved = True
                    rdata = e.body.tsxState.src.rdata
                    self.worker.save_early(s, rdata.wholeMsg, rdata.srcAddress)
            elif 200 <= code < 300 and "dialog" not in s.redis_state:
                if s.direction == ev.DIRECTION_OUTBOUND and e.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG:
                    rdata = e.body.tsxState.src.rdata
                    self.worker.save_dialog(s, dialog.from_uac_response(rdata.wholeMsg, rdata.srcAddress))
                elif s.direction == ev.DIRECTION_INBOUND and s.invite:
                    ok = tsx.lastTx.wholeMsg
                    if ok:
                        self.worker.save_dialog(s, dialog.from_uas_request(s.invite, ok, s.invite_src))
        except Exception:
            log.exception("onCallTsxState")

    def onCallMediaState(self, prm):
        try:
            self.worker.on_call_media_state(self)
        except Exception:
            log.exception("onCallMediaState")

    def onCallSdpCreated(self, prm):
        # media bridge: point the SDP's audio at the bridge's own RTP socket (bridged calls only)
        try:
            self.worker.bridge.on_sdp_created(self.session, prm)
        except Exception:
            log.exception("onCallSdpCreated")

    def onStreamCreated(self, prm):
        try:
            self.worker.bridge.on_stream_created(self.session, prm)
        except Exception:
            log.exception("onStreamCreated")

    def onCallTransferStatus(self, prm):
        # our REFER (blind transfer): its answer, then the NOTIFYs of how the carrier's call went
        try:
            self.worker.transfers.on_refer_status(self.session, prm.statusCode, prm.reason, prm.finalNotify)
        except Exception:
            log.exception("onCallTransferStatus")

    def onDtmfDigit(self, prm):
        # SIP INFO digits (RFC 4733 digits never reach pjsua: the bridge reads the RTP itself)
        try:
            self.worker.bridge.on_dtmf(self.session, prm.digit)
        except Exception:
            log.exception("onDtmfDigit")


class GatewayAccount(pj.Account):
    def __init__(self, worker: Worker):
        super().__init__()
        self.worker = worker
        self.in_use = 0
        self.last_used = time.monotonic()

    def onIncomingCall(self, prm):
        try:
            self.worker.on_incoming_call(self, prm)
        except Exception:
            log.exception("onIncomingCall")


MAIN_LOOP_WAIT_MS = 100
OUTBOX_BATCH = 64  # outbox entries written in one round trip at most
SOUND_CLOCK_LINGER_S = 10.0  # the conference clock stays on this long after the last unbridged call


class CommandListener(threading.Thread):
    """Waits in Redis (BLPOP) for this worker's commands and, while it has a free slot, for a token
    of ``gw:originate:wake``, and hands what it got to the main loop through ``inbox``.

    Why a thread: polling Redis from the main loop every few ms costs CPU on every idle worker and
    adds up to the poll interval to each call's setup. The main thread sits in ``libHandleEvents``,
    so the listener wakes it by sending CRLF to the worker's own SIP port: pjsip drops it as a
    keep-alive, and the wait returns at once. Only the main thread touches pjsua2 and pops
    originates (the pop stays atomic and sized by the free slots the main thread counts).
    """

    REARM = b'{"type":"rearm"}'  # pushed to our own command list: re-enter BLPOP with the wake key

    def __init__(self, redis_url: str, gateway_id: str, sip_addr: tuple[str, int], wait_s: float,
                 region: str = ""):
        super().__init__(name="gw-commands", daemon=True)
        # the region's own queue first, then the shared one
        self.wake_keys = [keys.originate_wake(region), keys.ORIGINATE_WAKE] if region else [keys.ORIGINATE_WAKE]
        self.r = redis.MiniRedis.from_url(redis_url, socket_timeout=wait_s + 5, socket_connect_timeout=2)
        self.commands_key = keys.gw_commands_key(gateway_id)
        self.sip_addr = sip_addr
        self.wait_s = wait_s
        self.inbox: collections.deque = collections.deque()  # ("command", raw) | ("originate", None)
        self.room = False  # set by the main thread: the worker has a free call slot
        self.armed = False  # the BLPOP under way includes the wake key
        self.stopping = False
        self._poke = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def run(self) -> None:
        # Never calls pjsua2, but Python's cyclic GC can run a pjsua2 destructor on any thread, and
        # pjlib aborts the process when called from a thread it does not know.
        pj.Endpoint.instance().libRegisterThread(self.name)
        failing = False
        while not self.stopping:
            self.armed = False  # before reading room: see Worker.update_room
            room = self.room
            self.armed = room
            lists = [self.commands_key, *self.wake_keys] if room else [self.commands_key]
            try:
                got = self.r.blpop(lists, self.wait_s)
                failing = False
            except redis.RedisError as exc:
                if not failing:
                    log.error("command listener: %s", exc)
                failing = True
                time.sleep(0.5)
                got = None
            if got is None:
                if not room:
                    continue
                self.inbox.append(("originate", None))  # no token for a while: look at the queue anyway
            elif got[0] == self.commands_key.encode():
                if got[1] == self.REARM:
                    continue
                self.inbox.append(("command", got[1]))
            else:
                self.inbox.append(("originate", None))
            self.wake_main()

    def wake_main(self) -> None:
        try:
            self._poke.sendto(b"\r\n\r\n", self.sip_addr)
        except OSError:
            pass  # the main loop still wakes within its libHandleEvents timeout


def set_transaction_timeout(ms: int) -> None:
    """Shorten pjsip's transaction timeout (Timer B/F/H and Timer D, RFC default 32 s).

    Why: an INVITE hung up before any response (dead carrier, our provisional timeout) keeps its
    pjsua call slot until Timer B fires, and a process has only 4 slots. pjsua2 does not expose
    pjsip_tsx_set_timers(), so it is called through ctypes on the loaded _pjsua2 library. Timer B
    stops at the first provisional response: ringing calls are not affected (measured).
    """
    try:
        import ctypes

        lib = ctypes.CDLL(pj._pjsua2.__file__)
        lib.pjsip_tsx_set_timers(PJSIP_T1_MS, PJSIP_T2_MS, PJSIP_T4_MS, ms)
    except (OSError, AttributeError) as exc:
        log.warning("cannot set the SIP transaction timeout (%s): dead carriers hold slots 32 s", exc)


def _quiet(fn):
    """Run fn with the process's stdout (fd 1) sent to /dev/null."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        return fn()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _parse_uri_user(uri_text: str) -> str:
    """User part of a SIP URI in a header value or request line ('"x" <sip:+1555@h;p>' -> '+1555')."""
    s = uri_text
    if "<" in s:
        s = s.split("<", 1)[1].split(">", 1)[0]
    for scheme in ("sips:", "sip:", "tel:"):
        i = s.find(scheme)
        if i >= 0:
            s = s[i + len(scheme):]
            break
    user = s.split("@", 1)[0] if "@" in s else s.split(";", 1)[0]
    return user.split(";", 1)[0].strip()


def parse_invite(whole_msg: str) -> tuple[str, str]:
    """(dialed user from the request URI, caller user from From) of a raw INVITE."""
    lines = whole_msg.split("\r\n") if "\r\n" in whole_msg else whole_msg.split("\n")
    parts = lines[0].split()
    dialed = _parse_uri_user(parts[1]) if len(parts) >= 2 else ""
    caller = ""
    for line in lines[1:]:
        if not line:
            break
        name, _, value = line.partition(":")
        if name.strip().lower() in ("from", "f"):
            caller = _parse_uri_user(value)
            break
    return dialed, caller


class Worker:
    def __init__(self, args):
        self.args = args
        self.gateway_id: str = args.gateway_id
        self.capacity = min(args.capacity, PJSUA_MAX_CALLS)
        # short timeouts: this is the SIP thread; a Redis that hangs must not stall it for long
        self.r = redis.MiniRedis.from_url(args.redis_url, socket_timeout=1, socket_connect_timeout=0.5)
        self.store = Store(self.r)
        self.transfers = Transfers(self)
        self.limits = CallLimits(self.r, (redis.RedisError,), online=lambda: self.redis_ok)
        # while Redis is unreachable only this asks whether it is back: a Redis that hangs (rather than
        # refusing connections) then costs the SIP thread at most 0.2 s a second
        self.redis_probe = redis.MiniRedis.from_url(args.redis_url, socket_timeout=0.2, socket_connect_timeout=0.2)
        self.sessions: dict[str, Session] = {}
        # Every live pjsua call (outbound legs, inbound, rejects), and Session.pjcall: both let go in
        # the DISCONNECTED callback, where the C++ Call is also deleted (_free_now).
        self.pjcalls: set[GatewayCall] = set()
        # A call hung up before any response says DISCONNECTED at once but keeps its pjsua slot
        # until the INVITE transaction times out (Timer B; measured): count those slots.
        self.zombies: list[float] = []
        self.zombie_seconds = args.tsx_timeout + 1.0
        self.outbox: collections.deque = collections.deque()  # ('publish'|'state'|'finalize'|'requeue', event, state)
        self.stopping = False
        self.started_at = time.time()
        self.sip_port = 0
        self.ep: pj.Endpoint | None = None
        self.acc: GatewayAccount | None = None
        self.cred_accounts: dict[tuple, GatewayAccount] = {}
        self.redis_ok = True
        self.stats = collections.Counter()
        self.clocked_calls: set[str] = set()  # answered calls that use pjsua's own media (not bridged)
        self.sound_clock = False
        self.clock_needed_at = 0.0  # when an unbridged answered call last needed the clock
        self.listener: CommandListener | None = None
        self.cap_retry_at = 0.0  # monotonic: look at the queue then (tenants held back at full caps)

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        a = self.args
        ep = self.ep = pj.Endpoint()
        _quiet(ep.libCreate)  # pjlib logs its start-up at level 5 before any config applies
        cfg = pj.EpConfig()
        cfg.uaConfig.maxCalls = PJSUA_MAX_CALLS
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.userAgent = f"voiceplatform-gw/{self.gateway_id}"
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.channelCount = 1
        cfg.medConfig.noVad = True
        # pjsua's RTP sockets share the SIP ioqueue polled by this thread: no media worker thread
        # waking 100 times a second in every idle worker (bridged calls' RTP is the media host's)
        cfg.medConfig.hasIoqueue = False
        cfg.medConfig.threadCnt = 0
        cfg.medConfig.ecTailLen = 0
        cfg.logConfig.level = a.pj_log_level
        cfg.logConfig.consoleLevel = a.pj_log_level
        cfg.logConfig.msgLogging = a.pj_log_level >= 5
        cfg.logConfig.decor = pj.PJ_LOG_HAS_SENDER
        cfg.logConfig.writer = self.pjsip_log = PjsipLog()  # pjsip's lines as the platform's
        ep.libInit(cfg)
        set_transaction_timeout(int(a.tsx_timeout * 1000))
        tc = pj.TransportConfig()
        tc.port = a.sip_port
        if a.bind:
            tc.boundAddress = a.bind
        if a.public_ip:
            tc.publicAddress = a.public_ip
        tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        self.sip_port = ep.transportGetInfo(tid).localName.rsplit(":", 1)[-1]
        self.sip_port = int(self.sip_port)
        ep.libStart()
        self.bridge = MediaBridge(self, a.media_port_min, a.media_port_max, a.bind, a.agent_connect_timeout,
                                  host_path=a.media_host)
        ep.audDevManager().setNoDev()  # no conference clock until a call needs one (set_sound_clock)
        for ci in ep.codecEnum2():
            prio = {"PCMU/8000/1": 255, "PCMA/8000/1": 254}.get(ci.codecId, 0)
            ep.codecSetPriority(ci.codecId, prio)
        self.region = ev.node_region(a.region)
        self.acc = self._new_account(f"sip:gateway@{a.public_ip or '127.0.0.1'}", None, None)
        log.info("started pid=%s sip_port=%s capacity=%s", os.getpid(), self.sip_port, self.capacity)
        self.heartbeat()
        self.listener = CommandListener(a.redis_url, self.gateway_id, (a.bind or "127.0.0.1", self.sip_port),
                                        a.poll_ms / 1000.0, self.region)
        self.listener.start()

    def _new_account(self, id_uri: str, username: str | None, password: str | None) -> GatewayAccount:
        acfg = pj.AccountConfig()
        acfg.idUri = id_uri
        acfg.regConfig.registrarUri = ""
        acfg.regConfig.registerOnAdd = False
        if username:
            acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", username, 0, password or ""))
        # RFC 4028 session timers when the far end supports them: a dead far end stops refreshing
        # (or answering our refreshes) and pjsua ends the call (reason session_timer_expired)
        cc = acfg.callConfig
        if self.args.session_expires > 0:
            cc.timerUse = pj.PJSUA_SIP_TIMER_OPTIONAL
            cc.timerSessExpiresSec = max(90, self.args.session_expires)
            cc.timerMinSESec = 90
        else:
            cc.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
        mt = acfg.mediaConfig.transportConfig
        mt.port = self.args.rtp_port
        mt.portRange = self.args.rtp_port_range
        if self.args.public_ip:
            mt.publicAddress = self.args.public_ip
        if self.args.bind:
            mt.boundAddress = self.args.bind
        acc = GatewayAccount(self)
        acc.create(acfg)
        return acc

    def account_for(self, leg: CarrierLeg) -> GatewayAccount:
        user = leg.get("username")
        if not user:
            return self.acc
        key = (user, leg.get("password") or "", leg.get("from_domain") or "")
        acc = self.cred_accounts.get(key)
        if acc is None:
            if len(self.cred_accounts) >= MAX_CRED_ACCOUNTS:
                idle = [k for k, a in self.cred_accounts.items() if a.in_use == 0]
                if not idle:
                    raise RuntimeError("no free credential account slot")
                victim = min(idle, key=lambda k: self.cred_accounts[k].last_used)
                old = self.cred_accounts.pop(victim)
                old.shutdown()
                del old
            host = leg.get("from_domain") or self.args.public_ip or "127.0.0.1"
            acc = self._new_account(f"sip:{user}@{host}", user, leg.get("password"))
            self.cred_accounts[key] = acc
        acc.last_used = time.monotonic()
        return acc

    def run(self) -> int:
        self.start()
        next_hb = 0.0
        last = time.monotonic()
        while not self.stopping:
            # Everything that needs this thread wakes it (SIP traffic, the command listener, the media
            # loop), so the timeout only paces our own timers (ring/provisional timeouts, heartbeat).
            self.ep.libHandleEvents(MAIN_LOOP_WAIT_MS)
            self.bridge.poll()  # what the media host asked of this thread
            now = time.monotonic()
            if now - last > 0.25:  # SIP timers (T1 = 500 ms) suffer from longer stalls
                self.stats["stalls"] += 1
                log.warning("event loop stalled %.0f ms (%d stalls so far)", (now - last) * 1000,
                            self.stats["stalls"])
            last = now
            self.check_timers(now)
            self.take_commands()
            self.update_room()
            self.flush_outbox()
            if now >= next_hb:
                self.heartbeat()
                self.set_sound_clock()  # off once no call has needed it for a while
                next_hb = now + 1.0
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        log.info("shutting down: %d calls", len(self.sessions))
        self.listener.stopping = True
        self.listener.room = False
        self._hangup_everything()
        deadline = time.monotonic() + self.args.shutdown_timeout
        while self.pjcalls and time.monotonic() < deadline:
            self.ep.libHandleEvents(20)
            self.bridge.poll()
        self._finish_leftovers()
        deadline = time.monotonic() + self.args.shutdown_timeout
        while True:  # the final events and releases must reach Redis: wait a little if it is away
            self.flush_outbox()
            try:
                self.limits.flush()
            except redis.RedisError:
                pass
            if not (self.outbox or self.limits.unreleased) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
            self.redis_ok = True
        try:
            self.r.delete(keys.gw_alive_key(self.gateway_id))
            self.r.hset(keys.gw_key(self.gateway_id), mapping={"active": 0, "state": "stopped",
                                                             "updated_at": f"{time.time():.3f}"})
        except redis.RedisError:
            pass
        # every pjsua2 object must be gone before libDestroy, or it asserts; no local variable of
        # this frame may still hold one
        self.bridge.shutdown()  # `stop` to the agents, sockets closed, loop thread ended
        self._drop_calls()
        self._drop_accounts()
        gc.collect()
        self.ep.libDestroy()
        self.ep = None
        log.info("stopped")

    def _hangup_everything(self) -> None:
        for s in list(self.sessions.values()):
            self.end_session(s, ev.REASON_SHUTDOWN)
        for c in list(self.pjcalls):
            if c.session is None:
                self._hangup_pj(c)

    def _finish_leftovers(self) -> None:
        """Final events for calls pjsua did not report disconnected in time."""
        for s in list(self.sessions.values()):
            self.bridge.on_call_ended(s)
            self.finish(s, code=0, sip_reason="", by=ev.BY_PLATFORM)

    def _drop_calls(self) -> None:
        for c in self.pjcalls:
            c.session = None
        self.pjcalls.clear()
        for s in self.sessions.values():
            s.pjcall = None
        self.sessions.clear()

    def _drop_accounts(self) -> None:
        for a in list(self.cred_accounts.values()) + [self.acc]:
            a.shutdown()
        self.cred_accounts.clear()
        self.acc = None

    # ------------------------------------------------------------------------------ redis I/O
    def heartbeat(self) -> None:
        """Every second: the worker's hash and heartbeat key, the slot leases of its calls. After
        Redis was unreachable (stopped, restarted empty), also what waited (events, releases) and
        the calls it holds, written again (reassert_calls)."""
        try:
            if not self.redis_ok:
                self.redis_probe.ping()  # raises while Redis is still unreachable
                self.redis_ok = True
                self.flush_outbox()
                if not self.redis_ok:
                    return
                self.reassert_calls()
                log.info("redis reachable again: events flushed, %d calls re-asserted", len(self.sessions))
            self.limits.flush()
            p = self.r.pipeline(transaction=False)
            p.hset(keys.gw_key(self.gateway_id), mapping={
                "pid": os.getpid(), "node": socket.gethostname(), "capacity": self.capacity,
                "active": len(self.sessions), "sip_port": self.sip_port,
                "public_ip": self.args.public_ip or "", "region": self.region, "started_at": f"{self.started_at:.3f}",
                "updated_at": f"{time.time():.3f}", "state": "stopping" if self.stopping else "running",
            })
            p.set(keys.gw_alive_key(self.gateway_id), os.getpid(), ex=3)
            if self.region:
                p.set(keys.region_alive_key(self.region), self.gateway_id, ex=3)
            p.sadd(keys.GATEWAYS_SET, self.gateway_id)
            p.execute()
            self.limits.renew((s.call_id, s.held) for s in self.sessions.values())
        except redis.RedisError as exc:
            self.redis_failed(exc)

    def redis_failed(self, exc: Exception) -> None:
        if self.redis_ok:
            log.error("redis unreachable (%s): %d events and %d slot releases wait in memory; calls go on",
                      exc, len(self.outbox), len(self.limits.unreleased))
        self.redis_ok = False

    def reassert_calls(self) -> None:
        """Our calls as Redis must know them (it may have restarted empty): each in gw:{id}:calls,
        its call:{id} fields, its slot leases (taken again over the caps if need be: the call is up)."""
        p = self.r.pipeline(transaction=False)
        for s in self.sessions.values():
            p.sadd(keys.gw_calls_key(self.gateway_id), s.call_id)
            fields = {"gateway": self.gateway_id, "direction": s.direction, "tenant": s.tenant or "",
                      "from": s.extra.get("from") or "", "to": s.extra.get("to") or "", **s.redis_state}
            p.hset(keys.call_key(s.call_id), mapping={k: _s(v) for k, v in fields.items()})
        p.execute()
        self.limits.reassert((s.call_id, s.held) for s in self.sessions.values() if s.held)

    def free_slots(self) -> int:
        now = time.monotonic()
        if self.zombies:
            self.zombies = [t for t in self.zombies if t > now]
        return self.capacity - max(len(self.sessions), len(self.pjcalls) + len(self.zombies))

    def wake_main(self) -> None:
        """Any thread: make the main loop's libHandleEvents return now."""
        if self.listener is not None:
            self.listener.wake_main()

    def take_commands(self) -> None:
        """What the listener received: commands for our calls, then originates if it saw a token."""
        inbox, wanted = self.listener.inbox, False
        if self.cap_retry_at and time.monotonic() >= self.cap_retry_at:
            self.cap_retry_at, wanted = 0.0, True
        while inbox:
            kind, raw = inbox.popleft()
            if kind == "command":
                self.handle_command(raw)
            else:
                wanted = True
        if wanted:
            self.take_originates()

    def take_originates(self) -> None:
        """Pop as many originate commands as there are free slots (none: the token goes back)."""
        if not self.redis_ok:
            return  # the listener looks again once Redis answers
        free = 0 if self.stopping else max(0, self.free_slots())
        try:
            popped = self.store.pop_originates(self.gateway_id, free, region=self.region)
        except redis.RedisError as exc:
            self.redis_failed(exc)
            return
        back: dict[tuple[str, str], list[tuple[bytes, str]]] = {}  # (region, tenant) -> commands going back
        for raw, flag, region in popped:
            cmd = self.originate_command(raw, flag)
            if cmd is None:
                continue
            queue = (region, cmd.get("tenant") or "")
            if not self.handle_originate(cmd, flag, behind_waiting=queue in back):
                back.setdefault(queue, []).append((raw, cmd["call_id"]))
        for (region, tenant), commands in back.items():
            log.debug("caps full: %d calls of %r back to their queue", len(commands), tenant)
            self.outbox.append(("requeue", {"region": region, "tenant": tenant, "commands": commands}, None))
        if back:  # those tenants' calls are tried again when their hold ends, here (or by any gateway's poll)
            self.cap_retry_at = time.monotonic() + CAP_HOLD_MS / 1000
            self.flush_outbox()

    def update_room(self) -> None:
        """Tell the listener whether to wait for originate tokens; on the way from full to free, look
        at the queue at once (calls may be waiting for a slot) and re-arm the listener's BLPOP."""
        room = not self.stopping and self.free_slots() > 0
        if room == self.listener.room:
            return
        self.listener.room = room
        if room:
            self.take_originates()
            if not self.listener.armed and self.redis_ok:
                try:
                    self.r.rpush(keys.gw_commands_key(self.gateway_id), CommandListener.REARM)
                except redis.RedisError:
                    pass  # the listener re-arms after its BLPOP timeout

    def emit(self, s: Session, type_: str, state: dict | None = None, **fields) -> None:
        fields.setdefault("gateway_id", self.gateway_id)
        fields.setdefault("direction", s.direction)
        if s.tenant:
            fields.setdefault("tenant", s.tenant)
        if s.leg >= 0 and type_ not in (ev.INITIATED,):
            fields.setdefault("leg", s.leg)
            fields.setdefault("carrier_id", s.carrier_id)
        for k, v in s.extra.items():
            fields.setdefault(k, v)
        if s.sip_call_id and type_ not in (ev.INITIATED, ev.LEG_STARTED):
            fields.setdefault("sip_call_id", s.sip_call_id)
        event = ev.make_event(s.call_id, type_, **fields)  # ts: now, however late Redis gets it
        if state:
            s.redis_state.update(state)
        final = ev.is_final(event)
        self.outbox.append(("finalize" if final else "publish", event, state))
        level = logging.DEBUG if type_ in ROUTINE_EVENTS else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "event %s %s %s", s.call_id, type_,
                    {k: v for k, v in fields.items() if k in ("leg", "sip_code", "outcome", "reason")})
        if final:
            self.transfers.on_final(s, event)

    def save_state(self, s: Session, **fields) -> None:
        """Fields for call:{id} with no event of their own (dialog, slots), in order with the events."""
        s.redis_state.update(fields)
        self.outbox.append(("state", {"call_id": s.call_id}, fields))

    def save_dialog(self, s: Session, d: dict | None) -> None:
        if d is not None:
            self.save_state(s, dialog=d)

    def save_early(self, s: Session, provisional: str, src: str) -> None:
        e = dialog.early_from_response(provisional, s.legs[s.leg]["uri"], src) if s.legs else None
        if e is not None:
            self.save_state(s, early=e)

    def flush_outbox(self) -> None:
        """Write what waits, in order; while Redis is unreachable it stays here (the heartbeat
        tries again) and the calls go on. One round trip for everything up to the next script (a
        final event, a requeue) included: a script that Redis lost (NOSCRIPT) is run again alone;
        any other error reply counts as a failed write from that entry on, as a lost connection does."""
        if not self.redis_ok:
            return
        while self.outbox:
            p = self.r.pipeline(transaction=False)
            sizes = []  # commands queued for each outbox entry of this round trip
            for kind, event, state in self.outbox:
                queued = len(p)
                self._write(kind, event, state, p)
                sizes.append(len(p) - queued)
                if kind in ("finalize", "requeue") or len(sizes) >= OUTBOX_BATCH:
                    break
            try:
                replies = p.execute(raise_on_error=False)
                for size in sizes:
                    error = next((r for r in replies[:size] if isinstance(r, redis.ResponseError)), None)
                    replies = replies[size:]
                    if error is not None:
                        if not str(error).startswith("NOSCRIPT"):
                            raise error
                        self._write(*self.outbox[0])  # the last of the round trip: EVAL loads it again
                    self.outbox.popleft()
            except redis.RedisError as exc:
                self.redis_failed(exc)
                return

    def _write(self, kind: str, event: dict, state: dict | None, pipe=None) -> None:
        if kind == "publish":
            self.store.publish(event, state, pipe=pipe)
        elif kind == "state":
            self.store.set_state(event["call_id"], state, pipe=pipe)
        elif kind == "requeue":
            self.store.requeue_originates(self.gateway_id, event["region"], event["tenant"], event["commands"],
                                          pipe=pipe)
        else:
            self.store.finalize(event, self.gateway_id, pipe=pipe)

    # ------------------------------------------------------------------------------ commands
    def handle_command(self, raw: bytes) -> None:
        try:
            cmd = json.loads(raw)
        except ValueError:
            log.error("bad command %r", raw[:200])
            return
        if cmd.get("type") == "hangup":
            s = self.sessions.get(cmd.get("call_id"))
            if s is None:
                log.info("hangup for unknown call %s", cmd.get("call_id"))
                return
            self.end_session(s, ev.REASON_HANGUP_REQUESTED)
        elif cmd.get("type") == "transfer":
            self.transfers.start(cmd)
        elif cmd.get("type") == "digits":
            s = self.sessions.get(cmd.get("call_id"))
            if s is None or not self.bridge.send_digits(s, str(cmd.get("digits") or "")):
                log.warning("digits not sent: %s", "unknown call" if s is None else "the call is not bridged",
                            extra={"call_sid": cmd.get("call_id")})
        elif cmd.get("type") == "twiml":
            s = self.sessions.get(cmd.get("call_id"))
            if s is not None and s.direction == ev.DIRECTION_INBOUND and s.state == "ringing":
                self.take_program(s, cmd.get("steps") or [])
            elif s is None or not self.bridge.run_twiml(s, cmd.get("steps") or []):
                log.warning("TwiML not run: %s", "unknown call" if s is None else "the call is not bridged",
                            extra={"call_sid": cmd.get("call_id")})
        else:
            log.error("unknown command %r", cmd)

    def originate_command(self, raw: bytes, flag: str) -> OriginateCommand | None:
        """A popped originate command, or None when it is not one or its call already ended."""
        try:
            cmd = json.loads(raw)
        except ValueError:
            cmd = None
        if flag == "bad" or not isinstance(cmd, dict):
            log.error("dropping malformed originate %r", raw[:200])
            return None
        if flag == "done":
            log.info("call %s already ended, not dialing", cmd["call_id"])
            return None
        return cast(OriginateCommand, cmd)

    def handle_originate(self, cmd: OriginateCommand, flag: str, behind_waiting: bool = False) -> bool:
        """Start an outbound call; False when it goes back to its queue instead: it may wait at full
        caps (an API call, ``wait_at_caps``) and every carrier leg (or its tenant) is at its cap now,
        or an earlier call of its tenant popped with it just went back (``behind_waiting``: order kept).
        Nothing of a call that goes back is published: its record stays queued."""
        call_id = cmd["call_id"]
        s = Session(call_id=call_id, direction=ev.DIRECTION_OUTBOUND, cmd=cmd, legs=list(cmd.get("legs") or []))
        s.tenant = cmd.get("tenant")
        bad = not s.legs or not all(isinstance(leg, dict) and leg.get("uri") for leg in s.legs) or not cmd.get("to")
        first_leg = 0
        if flag == "ok" and not bad and self.may_wait_at_caps(cmd):
            if behind_waiting or (first_leg := self.first_leg_with_room(s)) is None:
                return False
        s.extra = {"from": cmd.get("from"), "to": cmd.get("to")}
        if cmd.get("transfer_of"):  # a transfer leg (transfers.py): every event names its call
            s.extra["transfer_of"] = cmd["transfer_of"]
        s.ring_timeout = float(cmd.get("ring_timeout") or self.args.ring_timeout)
        s.max_duration = float(cmd.get("max_duration") or self.args.max_duration)
        s.provisional_timeout = float(cmd.get("provisional_timeout") or self.args.provisional_timeout)
        self.sessions[call_id] = s
        queued_at = cmd.get("queued_at")
        queue_ms = round((time.time() - float(queued_at)) * 1000, 1) if queued_at else None
        self.emit(s, ev.INITIATED, state={"state": "initiated", "direction": s.direction},
                  queue_ms=queue_ms, legs=len(s.legs))
        if flag == "cancel":
            self.fail(s, ev.OUTCOME_CANCELLED, code=0, reason=ev.REASON_HANGUP_REQUESTED)
            return True
        if bad:
            self.fail(s, ev.OUTCOME_INVALID, code=0, reason="no legs / uri / to in command")
            return True
        for index in range(first_leg):  # the legs before it were full: their failover, as when placed in turn
            s.leg = index
            self.emit(s, ev.LEG_STARTED, state={"state": "dialing", "leg": index, "carrier_id": s.carrier_id or ""},
                      uri=s.legs[index]["uri"])
            self.emit(s, ev.LEG_FAILED, sip_code=0, sip_reason=CARRIER_FULL, reason=ev.REASON_CARRIER_AT_CAPACITY,
                      failover=True, pdd_ms=None)
        self.save_slots(s)
        self.start_leg(s, first_leg)
        return True

    @staticmethod
    def may_wait_at_caps(cmd: OriginateCommand) -> bool:
        """An API call waits in its queue while caps are full, up to ``wait_at_caps`` s since it was queued."""
        limit, queued_at = float(cmd.get("wait_at_caps") or 0), cmd.get("queued_at")
        return limit > 0 and queued_at is not None and time.time() - float(queued_at) < limit

    def first_leg_with_room(self, s: Session) -> int | None:
        """The first leg whose caps have room now, its slots taken (its carrier's CPS turn may still be
        ahead: ``s.not_before``), or None when every leg is full."""
        for index, leg in enumerate(s.legs):
            try:
                verdict, wait = self.limits.admit(s.call_id, s.cmd, leg, s.held)
            except redis.RedisError as exc:
                self.redis_failed(exc)
                return index  # the caps cannot be read: the leg waits for Redis as any call's does
            if verdict == CallLimits.OK:
                s.admitted_leg = index
                return index
            if verdict == CallLimits.WAIT:
                s.not_before = time.monotonic() + wait
                return index
        return None

    # ------------------------------------------------------------------------------ outbound legs
    def start_leg(self, s: Session, index: int, defer: bool = False) -> None:
        """Start leg `index`; with defer (from inside a pjsua callback) the INVITE goes out from the
        main loop, once the slot of the leg that just ended is free."""
        s.leg = index
        s.state = "dialing"
        s.got_provisional = s.early_saved = s.ringing_sent = False
        s.pdd_ms = s.setup_ms = None
        s.hangup_reason = None
        s.sip_call_id = None
        s.leg_started_at = time.monotonic()
        s.leg_started_wall = time.time()
        leg = s.legs[index]
        self.emit(s, ev.LEG_STARTED, state={"state": "dialing", "leg": index, "carrier_id": s.carrier_id or ""},
                  uri=leg["uri"])
        if defer:
            s.leg_start_pending = True
        else:
            self.place_leg(s)

    def admit_leg(self, s: Session, leg: CarrierLeg) -> bool:
        """The carrier's and tenant's caps, once per leg: False when the leg waits for its CPS turn
        (placed later from check_timers) or was failed because the carrier is at capacity."""
        if s.admitted_leg == s.leg:
            return True
        capped = leg.get("max_concurrent") or leg.get("max_cps") or s.cmd.get("tenant_max_concurrent")
        if time.monotonic() < s.not_before or (capped and not self.redis_ok):  # caps live in Redis
            s.leg_start_pending = True
            return False
        try:
            verdict, wait = self.limits.admit(s.call_id, s.cmd, leg, s.held)
        except redis.RedisError as exc:  # caps cannot be checked: the leg waits for Redis
            self.redis_failed(exc)
            verdict, wait = CallLimits.WAIT, 0.5
        if verdict == CallLimits.WAIT:
            s.not_before = time.monotonic() + wait
            s.leg_start_pending = True
            self.save_slots(s)
            return False
        if verdict == CallLimits.FULL:
            self.leg_failed(s, 0, CARRIER_FULL, ev.REASON_CARRIER_AT_CAPACITY)
            return False
        s.admitted_leg = s.leg
        self.save_slots(s)
        return True

    def save_slots(self, s: Session) -> None:
        """The leg's slot keys in call:{id}, for whoever must give them back should this worker die."""
        if s.held and s.redis_state.get("slots") != [lim.key for lim in s.held]:
            self.save_state(s, slots=[lim.key for lim in s.held])

    def place_leg(self, s: Session) -> None:
        """makeCall for the current leg; retried from check_timers while pjsua has no free slot."""
        leg = s.legs[s.leg]
        s.leg_start_pending = False
        if not self.admit_leg(s, leg):
            return
        try:
            acc = self.account_for(leg)
            call = GatewayCall(self, acc, s)
            prm = pj.CallOpParam(True)
            host = leg.get("from_domain") or self.args.public_ip or "127.0.0.1"
            if s.cmd.get("from"):
                prm.txOption.localUri = f"sip:{s.cmd['from']}@{host}"
            for name, value in (s.cmd.get("headers") or {}).items():
                if name.lower() in RESERVED_HEADERS:
                    continue
                h = pj.SipHeader()
                h.hName = str(name)
                h.hValue = str(value)
                prm.txOption.headers.append(h)
            call.makeCall(leg["uri"], prm)
        except pj.Error as exc:
            # PJ_ETOOMANY: every pjsua slot is taken (an inbound call raced us, or a zombie): wait
            if exc.status == 70010 and time.monotonic() - s.leg_started_at < self.zombie_seconds + 2:
                s.leg_start_pending = True
                return
            self.leg_failed(s, 0, describe(exc), ev.REASON_TRANSPORT_ERROR)
            return
        except Exception as exc:  # bad URI type, no account slot...
            self.leg_failed(s, 0, str(exc), ev.REASON_TRANSPORT_ERROR)
            return
        acc.in_use += 1
        call.account = acc
        s.leg_started_at = time.monotonic()  # timers and PDD count from the INVITE actually sent
        try:
            s.sip_call_id = call.getInfo().callIdString
        except pj.Error:
            pass
        s.pjcall = call
        self.pjcalls.add(call)

    def leg_failed(self, s: Session, code: int, sip_reason: str, reason: str | None = None) -> None:
        """The current outbound leg ended without answer: fail over or end the call."""
        platform = s.hangup_reason
        if platform in (ev.REASON_NO_PROVISIONAL,):
            failover_cause = True
        elif platform:  # ring timeout, hangup requested, shutdown: the call ends here
            failover_cause = False
        else:
            failover_cause = ev.is_failover_code(code)
        more = s.leg + 1 < len(s.legs)
        failover = failover_cause and more and not self.stopping
        self.emit(s, ev.LEG_FAILED, sip_code=code, sip_reason=sip_reason, reason=platform or reason or sip_reason,
                  failover=failover, pdd_ms=s.pdd_ms)
        self.limits.release(s.call_id, s.held)
        if failover:
            self.start_leg(s, s.leg + 1, defer=True)
            return
        if platform == ev.REASON_RING_TIMEOUT:
            outcome = ev.OUTCOME_NO_ANSWER
        elif platform == ev.REASON_HANGUP_REQUESTED:
            outcome = ev.OUTCOME_CANCELLED
        elif platform == ev.REASON_SHUTDOWN:
            outcome = ev.OUTCOME_SHUTDOWN
        elif failover_cause:
            outcome = ev.OUTCOME_CARRIER_ERROR
        else:
            outcome = ev.outcome_for_code(code)
        self.fail(s, outcome, code=code, reason=platform or reason or sip_reason, sip_reason=sip_reason)

    def take_program(self, s: Session, steps: list) -> None:
        """An inbound call rang while the platform fetched its number's voice URL; its program came:
        a first <Reject> refuses the call unanswered (busy: 486, rejected: 603, and the call ends
        busy / no-answer as Twilio's does), anything else is answered and run from the answer."""
        if s.pjcall is None or s.hangup_reason:
            return
        if steps and steps[0].get("verb") == "reject":
            busy = steps[0].get("reason") == "busy"
            s.hangup_reason, s.refused_as = ev.REASON_TWIML_REJECT, ev.OUTCOME_BUSY if busy else ev.OUTCOME_NO_ANSWER
            self._hangup_pj(s.pjcall, 486 if busy else 603)
            return
        self.bridge.run_twiml(s, steps)
        s.state = "answering"
        self.answer(s.pjcall, 200)

    def answer(self, call: GatewayCall, code: int) -> None:
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        try:
            call.answer(prm)
        except pj.Error as exc:
            log.warning("answer %d failed: %s", code, describe(exc))

    def fail(self, s: Session, outcome: str, code: int, reason: str, sip_reason: str | None = None) -> None:
        s.state = "ended"
        self.sessions.pop(s.call_id, None)
        self.emit(s, ev.FAILED, outcome=outcome, sip_code=code, sip_reason=sip_reason, reason=reason,
                  legs_tried=s.leg + 1 if s.leg >= 0 else 0)
        self.limits.release(s.call_id, s.held)

    def finish(self, s: Session, code: int, sip_reason: str, by: str, leg_ended: bool = False) -> None:
        """Final event of a session whose pjsua call is gone (leg_ended: pjsua reported it)."""
        if s.call_id in self.clocked_calls:
            self.clocked_calls.discard(s.call_id)
            self.clock_needed_at = time.monotonic()
        if s.state == "answered":
            s.state = "ended"
            self.sessions.pop(s.call_id, None)
            # the far end went silent before we noticed (rtp_timeout): the call ended when it was last heard
            gone_for = max(0.0, time.time() - s.heard_until) if s.heard_until else 0.0
            duration = round(max(0.0, time.monotonic() - gone_for - s.answered_mono), 3)
            if s.hangup_reason is None and code == 408 and leg_ended:  # pjsip ends an expired session with 408
                s.hangup_reason, by = ev.REASON_SESSION_TIMER, ev.BY_PLATFORM
            self.emit(s, ev.COMPLETED, outcome=ev.OUTCOME_ANSWERED, hangup_by=by, sip_code=code,
                      sip_reason=sip_reason, reason=s.hangup_reason or ev.REASON_REMOTE_HANGUP,
                      duration=duration, setup_ms=s.setup_ms, ts=time.time() - gone_for)
            self.limits.release(s.call_id, s.held)  # after the event: its time is the call's end
        elif s.direction == ev.DIRECTION_INBOUND:
            self.fail(s, s.refused_as or (ev.outcome_for_code(code) if not s.hangup_reason else ev.OUTCOME_CANCELLED),
                      code=code, reason=s.hangup_reason or sip_reason, sip_reason=sip_reason)
        elif not leg_ended:
            self.fail(s, ev.OUTCOME_SHUTDOWN if self.stopping else ev.OUTCOME_CANCELLED, code=code,
                      reason=s.hangup_reason or sip_reason)
        else:
            self.leg_failed(s, code, sip_reason)

    # ------------------------------------------------------------------------------ ending
    def end_session(self, s: Session, reason: str) -> None:
        """Platform-side end: CANCEL if not answered, BYE if answered."""
        if s.hangup_reason is None:
            s.hangup_reason = reason
        if s.pjcall is None or s.leg_start_pending:
            s.leg_start_pending = False
            self.finish(s, code=0, sip_reason="", by=ev.BY_PLATFORM)
            return
        self._hangup_pj(s.pjcall)

    def _hangup_pj(self, call: GatewayCall, code: int = 0, force: bool = False) -> None:
        if call.disconnected or (call.hangup_done and not force):
            return
        call.hangup_done = True
        prm = pj.CallOpParam(True)
        if code:
            prm.statusCode = code
        s = call.session
        if s is not None:
            s.hangup_sent_at = time.monotonic()
            if s.direction == ev.DIRECTION_OUTBOUND and not s.got_provisional and s.state == "dialing":
                self.zombies.append(time.monotonic() + self.zombie_seconds)
        try:
            call.hangup(prm)
        except pj.Error as exc:
            log.warning("hangup failed: %s", describe(exc))

    def check_timers(self, now: float) -> None:
        for s in list(self.sessions.values()):
            if s.leg_start_pending:
                self.place_leg(s)
                continue
            if s.pjcall is None or s.hangup_reason:
                continue
            if s.state == "ringing" and s.direction == ev.DIRECTION_INBOUND:  # waiting for its TwiML
                if now - s.leg_started_at > ev.TWIML_WAIT_S:
                    s.hangup_reason, s.refused_as = ev.REASON_TWIML_MISSING, ev.outcome_for_code(480)
                    self._hangup_pj(s.pjcall, 480)
            elif s.state in ("dialing", "ringing") and s.direction == ev.DIRECTION_OUTBOUND:
                if not s.got_provisional and now - s.leg_started_at > s.provisional_timeout:
                    s.hangup_reason = ev.REASON_NO_PROVISIONAL
                    self._hangup_pj(s.pjcall)
                elif now - s.leg_started_at > s.ring_timeout:
                    s.hangup_reason = ev.REASON_RING_TIMEOUT
                    self._hangup_pj(s.pjcall)
            elif s.state == "answered" and now - s.answered_mono > s.max_duration:
                s.hangup_reason = ev.REASON_MAX_DURATION
                self._hangup_pj(s.pjcall)
            elif s.call_id in self.clocked_calls and self.args.rtp_timeout > 0:
                self.check_rtp(s, now)

    def check_rtp(self, s: Session, now: float) -> None:
        """An answered call on pjsua's own media (not bridged: the media host watches bridged calls)
        whose far end sent no RTP for --rtp-timeout s ends with rtp_timeout. pjsua's count of
        received packets is read about once a second."""
        if s.rtp_count >= 0 and now - s.rtp_checked_at < 1.0:
            return
        s.rtp_checked_at = now
        try:
            ci = s.pjcall.getInfo()
            idx = next((m.index for m in ci.media if m.type == pj.PJMEDIA_TYPE_AUDIO), None)
            count = s.pjcall.getStreamStat(idx).rtcp.rxStat.pkt if idx is not None else 0
        except pj.Error:
            count = max(0, s.rtp_count)
        if count != s.rtp_count:
            s.rtp_count, s.rtp_seen_at = count, max(now, s.answered_mono)
        elif now - max(s.rtp_seen_at, s.answered_mono) > self.args.rtp_timeout:
            log.warning("call %s: no RTP for %.1f s: ending it", s.call_id, now - s.rtp_seen_at)
            s.hangup_reason = ev.REASON_RTP_TIMEOUT
            s.heard_until = time.time() - (now - max(s.rtp_seen_at, s.answered_mono))
            self._hangup_pj(s.pjcall)

    # ------------------------------------------------------------------------------ pjsua callbacks
    def on_call_state(self, call: GatewayCall) -> None:
        ci = call.getInfo()
        st = ci.state
        s = call.session
        if st == pj.PJSIP_INV_STATE_DISCONNECTED:
            call.disconnected = True
            self.pjcalls.discard(call)
            acc = getattr(call, "account", None)
            if acc is not None:
                acc.in_use -= 1
            try:
                if s is None or s.pjcall is not call:
                    return
                s.pjcall = None
                by = ev.BY_PLATFORM if s.hangup_reason else (
                    ev.BY_CALLEE if s.direction == ev.DIRECTION_OUTBOUND else ev.BY_CALLER)
                self.bridge.on_call_ended(s)  # media quality fields into the final event, `stop` to the agent
                self.finish(s, ci.lastStatusCode, ci.lastReason, by, leg_ended=True)
            finally:
                _free_now(call)
            return
        if s is None or s.pjcall is not call:
            return
        if st == pj.PJSIP_INV_STATE_EARLY:
            s.got_provisional = True
            if not s.ringing_sent and 180 <= ci.lastStatusCode < 190 and not s.hangup_reason:
                s.ringing_sent = True
                s.state = "ringing"
                s.pdd_ms = round((time.monotonic() - s.leg_started_at) * 1000, 1)
                self.emit(s, ev.RINGING, state={"state": "ringing"}, sip_code=ci.lastStatusCode, pdd_ms=s.pdd_ms)
        elif st in (pj.PJSIP_INV_STATE_CONNECTING, pj.PJSIP_INV_STATE_CONFIRMED):
            if s.setup_ms is None:
                s.setup_ms = round((time.monotonic() - s.leg_started_at) * 1000, 1)
            if st == pj.PJSIP_INV_STATE_CONFIRMED and s.state != "answered":
                s.state = "answered"
                s.answered_mono = time.monotonic()
                s.answered_wall = time.time()
                fields = {"setup_ms": s.setup_ms, "pdd_ms": s.pdd_ms} if s.direction == ev.DIRECTION_OUTBOUND else {}
                self.emit(s, ev.ANSWERED, state={"state": "answered", "answered_at": f"{s.answered_wall:.3f}"},
                          sip_code=200, **fields)
                self.on_answered(s, call)
                if s.hangup_reason:  # a hangup raced the 200 OK: BYE now
                    self._hangup_pj(call, force=True)

    def on_call_media_state(self, call: GatewayCall) -> None:
        """Media is up or changed (also re-INVITEs): the bridge re-reads the negotiated stream."""
        s = call.session
        if s is not None and s.pjcall is call:
            self.bridge.on_media_state(s, call)

    def on_answered(self, s: Session, call: GatewayCall) -> None:
        """Called once per answered call (both directions), from the main loop thread.

        A call with a stream URL or TwiML (originate ``stream_url`` / ``twiml`` / ``twiml_at_answer``, the
        inbound number route's ``stream_url`` / ``twiml_url``) is bridged by the media bridge (see
        media_bridge.py); other calls carry no audio of ours.
        """
        self.bridge.on_answered(s, call)
        self.transfers.on_answered(s)
        if s.call_id not in self.bridge.calls:
            self.clocked_calls.add(s.call_id)
            self.set_sound_clock()

    def set_sound_clock(self) -> None:
        """pjsua's conference clock (the null sound device) runs while an answered call uses pjsua's
        own media (a call that is not bridged: its stream sends silence, as carriers expect), and
        SOUND_CLOCK_LINGER_S after the last one, so a stream of short calls does not start and stop
        it for each. Idle, the clock thread wakes 50 times a second: most of an idle worker's CPU."""
        want = bool(self.clocked_calls) or time.monotonic() - self.clock_needed_at < SOUND_CLOCK_LINGER_S
        if want == self.sound_clock:
            return
        try:
            if want:
                self.ep.audDevManager().setNullDev()
            else:
                self.ep.audDevManager().setNoDev()
            self.sound_clock = want
        except pj.Error as exc:
            log.warning("sound clock %s: %s", "on" if want else "off", describe(exc))

    def on_incoming_call(self, acc: GatewayAccount, prm) -> None:
        rdata = prm.rdata
        src = rdata.srcAddress
        ip = src.rsplit(":", 1)[0].strip("[]") if src else ""
        call = GatewayCall(self, acc, None, prm.callId)
        self.pjcalls.add(call)
        if not self.redis_ok:  # routes and allowed addresses are in Redis: try another gateway
            self._hangup_pj(call, 503)
            return
        try:
            allowed = bool(self.r.sismember(keys.CARRIER_ADDRESSES, ip))
        except redis.RedisError as exc:
            log.error("inbound: redis failed (%s), rejecting with 503", exc)
            self._hangup_pj(call, 503)
            return
        if not allowed:
            log.warning("inbound INVITE from %s rejected (403)", src)
            try:
                self.r.incr(keys.INBOUND_REJECTED)
            except redis.RedisError:
                pass
            self._hangup_pj(call, 403)
            return
        dialed, caller = parse_invite(rdata.wholeMsg)
        route_raw = None
        try:
            for cand in (dialed, "+" + dialed) if dialed and not dialed.startswith("+") else (dialed,):
                route_raw = self.r.hget(keys.NUMBER_ROUTES, cand) if cand else None
                if route_raw:
                    dialed = cand
                    break
        except redis.RedisError:
            self._hangup_pj(call, 503)
            return
        if not route_raw:
            log.info("inbound call to unknown number %r from %s: 404", dialed, src)
            self._hangup_pj(call, 404)
            return
        try:
            route = json.loads(route_raw)
        except ValueError:
            route = {}
        if self.stopping or len(self.sessions) >= self.capacity:
            self._hangup_pj(call, 503)
            return
        call_id = uuid.uuid4().hex
        s = Session(call_id=call_id, direction=ev.DIRECTION_INBOUND, state="answering")
        s.tenant = route.get("tenant")
        s.max_duration = float(route.get("max_duration") or self.args.max_duration)
        ci = call.getInfo()
        s.extra = {"from": caller, "to": dialed, "route": route, "sip_call_id": ci.callIdString,
                   "source": ip}
        s.invite, s.invite_src = rdata.wholeMsg, src
        s.leg_started_at = time.monotonic()
        s.pjcall = call
        call.session = s
        self.sessions[call_id] = s
        try:
            p = self.r.pipeline(transaction=True)
            p.sadd(keys.gw_calls_key(self.gateway_id), call_id)
            p.hset(keys.call_key(call_id), mapping={"gateway": self.gateway_id, "direction": s.direction,
                                                  "tenant": s.tenant or "", "state": "initiated"})
            p.execute()
        except redis.RedisError as exc:
            self.redis_failed(exc)  # written again when Redis is back (reassert_calls)
        self.emit(s, ev.INITIATED, state={"state": "initiated"})
        if not route.get("twiml_url"):
            self.answer(call, 200)
            return
        # a voice URL: ring while the platform fetches it (take_program), as its program may refuse the call
        s.state, s.ringing_sent = "ringing", True
        self.emit(s, ev.RINGING, state={"state": "ringing"}, sip_code=180)
        self.answer(call, 180)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gateway-id", required=True)
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    p.add_argument("--sip-port", type=int, default=0, help="UDP SIP port (0 = any free)")
    p.add_argument("--public-ip", default=None, help="address put in Contact/Via/SDP")
    p.add_argument("--bind", default=None, help="bind address for SIP and RTP (default all)")
    p.add_argument("--region", default=os.environ.get("NODE_REGION", ""),
                   help="this node's region: take the calls of its carriers first, then those of any region")
    p.add_argument("--rtp-port", type=int, default=4000, help="first RTP port tried")
    p.add_argument("--rtp-port-range", type=int, default=0, help="RTP ports to try (0 = pjsua default)")
    p.add_argument("--capacity", type=int, default=PJSUA_MAX_CALLS)
    p.add_argument("--ring-timeout", type=float, default=30.0)
    p.add_argument("--provisional-timeout", type=float, default=5.0,
                   help="fail over to the next leg when no 1xx arrives within this many seconds")
    p.add_argument("--max-duration", type=float, default=3600.0)
    p.add_argument("--media-port-min", type=int, default=20000, help="media bridge RTP ports (pairs)")
    p.add_argument("--media-port-max", type=int, default=30000)
    p.add_argument("--media-host", default=None,
                   help="Unix socket of the media host that runs bridged calls' audio (default: a thread here)")
    p.add_argument("--agent-connect-timeout", type=float, default=10.0,
                   help="seconds for the agent's WebSocket to connect (else agent_connect_timeout)")
    p.add_argument("--tsx-timeout", type=float, default=8.0,
                   help="SIP transaction timeout in seconds (Timer B/F/D; RFC default 32)")
    p.add_argument("--poll-ms", type=int, default=1000,
                   help="longest wait for an originate wake-up before looking at the queue anyway")
    p.add_argument("--shutdown-timeout", type=float, default=5.0)
    p.add_argument("--rtp-timeout", type=float, default=float(os.environ.get("RTP_TIMEOUT_S") or 30),
                   help="end an answered call after this many seconds with no RTP from the far end (0 = never)")
    p.add_argument("--session-expires", type=int, default=int(os.environ.get("SIP_SESSION_EXPIRES_S") or 1800),
                   help="RFC 4028 session interval offered to carriers that support session timers (0 = off)")
    p.add_argument("--recordings-dir", default=os.environ.get("RECORDINGS_SPOOL_DIR") or "var/recordings/spool",
                   help="where media hosts write recorded calls' WAV files (the platform moves them into storage)")
    p.add_argument("--pj-log-level", type=int, default=1)
    args = cli.parse_args(p, argv, lambda a: a.gateway_id, needs_redis=True)
    worker = Worker(args)
    return cli.run_until_signalled(worker.run, lambda: setattr(worker, "stopping", True))


if __name__ == "__main__":
    sys.exit(main())
