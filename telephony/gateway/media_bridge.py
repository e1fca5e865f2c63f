"""Media bridge, worker side: which calls are bridged, their SDP, and the link to the media host.

pjsua2 keeps SIP and SDP negotiation; the audio of a bridged call never enters pjsua's media
stack. Why (measured, see docs/gateway.md "Media bridge"): a Python ``AudioMediaPort`` costs a
director call per 20 ms frame and direction on the conference bridge's single clock thread, and
reading a frame's ``ByteVector`` from Python costs ~350 us. The frame path runs in a media host
(media/host.py): a process of its own that serves many workers (``--media-host``, started by the
supervisor), or a thread of this worker when it runs alone.

* SDP: ``onCallSdpCreated`` rewrites the audio m-line (and ``a=rtcp``) of the SDP pjsua built to our
  own UDP pair (RTP even port, RTCP +1), bound right here and handed to the host. Codecs, payload
  types, direction and telephone-event stay exactly as pjsua negotiates them; ``onCallMediaState``
  reads the result (``Call.getStreamInfo``) and sends it to the host. pjsua's own stream is still
  created but paused in its sending direction (``onStreamCreated``), so the callee gets one stream.
* The host reports back (``started``, ``ended``, ``report``) through a reader thread that queues
  the work for the main thread (``poll``), because the worker's state is single-threaded.
"""
from __future__ import annotations

import base64
import collections
import ctypes
import errno
import functools
import logging
import random
import socket
import threading
import time
from typing import TYPE_CHECKING, cast

import pjsua2 as pj

from media import host_link
from media.protocol import MULAW_8K
from media.rtp import rewrite_sdp_media

from . import events as ev
from .contract import OriginateCommand
from .pj_errors import describe

if TYPE_CHECKING:
    from media.host import MediaHost

log = logging.getLogger("gateway.media")

HOST_RETRY_S = 1.0  # a lost host process is tried again at most this often (its restart takes < 1 s)
REPORT_WAIT_S = 1.0  # longest wait for a call's media figures at its end (the final event carries them)
FALLBACK_PART = 48_000  # bytes of fallback audio per link message


def stream_config(s) -> dict | None:
    """Stream settings of a worker Session, or None when the call is not bridged."""
    # the originate command, or the inbound number's route (contract.InboundRoute: the same stream
    # fields, less those only a command carries)
    src = cast(OriginateCommand, s.extra.get("route") or {}) if s.direction == ev.DIRECTION_INBOUND else s.cmd
    url = src.get("stream_url") or ""
    # TwiML: a program to run at the answer, or one the platform sends once it fetched the call's Url
    twiml = s.twiml if s.twiml is not None else src.get("twiml")
    twiml_wait = bool(src.get("twiml_at_answer") or src.get("twiml_url"))
    # a transfer leg is bridged too: its audio is joined to its call's
    if not (url or twiml is not None or twiml_wait or src.get("transfer_of")):
        return None
    params = {str(k): str(v) for k, v in (src.get("custom_parameters") or {}).items()}
    params.setdefault("from_number", str(s.extra.get("from") or ""))
    params.setdefault("to_number", str(s.extra.get("to") or ""))
    account_sid = src.get("account_sid") or ""
    return {
        "url": url,
        "params": params,
        "account_sid": account_sid,
        "call_sid": s.call_id,
        "direction": s.direction,
        "connect_timeout": float(src.get("stream_connect_timeout") or 0),
        # the URL is the platform's relay and the agent connects in to it: wait until it has
        "via_relay": bool(src.get("stream_via_relay")),
        # Redis key of the message played when the agent fails (media.fallback), or ""
        "fallback_key": str(src.get("fallback_audio_key") or ""),
        "encoding": src.get("stream_encoding") or MULAW_8K["encoding"],  # what the agent sends and receives
        "amd": src.get("machine_detection"),  # answering-machine detection (media/amd_call.py), or None
        "send_digits": str(src.get("send_digits") or ""),  # sent to the callee once answered (RFC 4733)
        "twiml": twiml,  # media/twiml_player.py steps, or None
        "twiml_wait": twiml_wait,
    }


PJMEDIA_DIR_ENCODING = 1  # pjmedia_dir: the sending direction of a stream


@functools.cache
def _pjmedia() -> ctypes.CDLL:
    """The C library inside the pjsua2 wheel, for pjmedia calls pjsua2 does not wrap."""
    lib = ctypes.CDLL(pj._pjsua2.__file__)
    lib.pjmedia_stream_pause.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _bind_pair(host: str, lo: int, hi: int) -> tuple[socket.socket, socket.socket]:
    """An RTP socket on an even port in [lo, hi) and its RTCP socket on port + 1."""
    span = max(2, (hi - lo) // 2)
    start = random.randrange(span)
    for i in range(span):
        port = lo + 2 * ((start + i) % span)
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            a.bind((host, port))
            b.bind((host, port + 1))
        except OSError:
            a.close()
            b.close()
            continue
        for x in (a, b):
            x.setblocking(False)
        return a, b
    raise OSError(f"no free RTP port pair in {lo}-{hi}")


class HostLink:
    """This worker's connection to its media host. ``send`` from the main thread; a reader thread
    hands the host's messages to ``on_message`` (which queues them for the main thread)."""

    def __init__(self, sock: socket.socket, on_message, on_lost):
        self.sock = sock
        sock.settimeout(2.0)  # a host that stopped reading must not hang SIP for long
        self.rsock = sock.dup()
        self.rsock.settimeout(None)
        self.on_message = on_message
        self.on_lost = on_lost
        self.alive = True
        self.reports: dict[str, dict] = {}
        self.reports_cv = threading.Condition()
        self.thread = threading.Thread(target=self._read, name="media-link", daemon=True)
        self.thread.start()

    def send(self, msg: dict, fds: list[int] | None = None) -> bool:
        if not self.alive:
            return False
        data = host_link.encode(msg)
        if len(data) > host_link.MAX_PACKET:  # this message cannot go (the link itself is fine)
            log.error("media host link: %s message of %d bytes is too long", msg.get("op"), len(data))
            return False
        try:
            if fds:
                socket.send_fds(self.sock, [data], fds)
            else:
                self.sock.send(data)
            return True
        except OSError as exc:
            log.error("media host link: send failed (%s)", exc)
            if exc.errno != errno.EMSGSIZE:  # too long for the socket: only this message is lost
                self._lost()
            return False

    def wait_report(self, call_id: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        with self.reports_cv:
            while call_id not in self.reports and self.alive:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.reports_cv.wait(left)
            return self.reports.pop(call_id, None)

    def _read(self) -> None:
        _register_thread("media-link")
        while self.alive:
            try:
                data = self.rsock.recv(host_link.MAX_PACKET)
            except OSError:
                data = b""
            if not data:
                break
            try:
                msg = host_link.decode(data)
            except ValueError:
                log.error("media host link: bad message %r", data[:200])
                continue
            if msg.get("op") == "report":
                with self.reports_cv:
                    self.reports[msg["call"]] = msg.get("report") or {}
                    self.reports_cv.notify_all()
            else:
                self.on_message(msg)
        self._lost()

    def _lost(self) -> None:
        with self.reports_cv:
            if not self.alive:
                return
            self.alive = False
            self.reports_cv.notify_all()
        self._shutdown()
        self.on_lost(self)

    def close(self) -> None:
        self.alive = False
        self._shutdown()
        for s in (self.sock, self.rsock):
            s.close()

    def _shutdown(self) -> None:
        """Both directions, so the reader thread's blocking recv returns."""
        for s in (self.sock, self.rsock):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class MediaBridge:
    """The bridged calls of one gateway worker. Hooks are called on the worker's main thread."""

    def __init__(self, worker, port_min: int = 20000, port_max: int = 30000, bind: str | None = None,
                 connect_timeout: float = 10.0, host_path: str | None = None):
        self.worker = worker
        self.port_min, self.port_max = port_min, port_max
        self.bind = bind or "0.0.0.0"
        self.connect_timeout = connect_timeout
        self.host_path = host_path  # the shared media host's socket, or None: a host in this process
        self.calls: dict[str, tuple[int, HostLink]] = {}  # bridged call id -> (its RTP port, its link)
        # calls that wanted a stream but could not be bridged -> why; ended on answer (the fallback
        # message first, when they have one and a host took them to play it)
        self.unbridged: dict[str, str] = {}
        self.main_q: collections.deque = collections.deque()
        self.host_link: HostLink | None = None  # to the media host process
        self.local_link: HostLink | None = None  # to the host in a thread of this process
        self.next_host_try = 0.0
        self.embedded: MediaHost | None = None  # that MediaHost, once started
        self.embedded_thread: threading.Thread | None = None

    # ---- the media host -----------------------------------------------------------------------------
    def _link(self) -> HostLink:
        """The link a new call goes to: the host process when it answers, else a host in this process.
        A lost host process is tried again (at most every HOST_RETRY_S), so calls go back to it once
        the supervisor has restarted it; a call stays on the link it started on."""
        if self.host_path:
            if self.host_link is not None and self.host_link.alive:
                return self.host_link
            now = time.monotonic()
            if now >= self.next_host_try:
                self.next_host_try = now + HOST_RETRY_S
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                try:
                    sock.connect(self.host_path)
                except OSError as exc:
                    sock.close()
                    log.error("media host %s unreachable (%s): bridging in this process until it is back",
                              self.host_path, exc)
                else:
                    self.host_link = HostLink(sock, self._from_host, self._host_lost)
                    return self.host_link
        if self.local_link is None or not self.local_link.alive:
            self.local_link = HostLink(self._start_embedded(), self._from_host, self._host_lost)
        return self.local_link

    def _start_embedded(self) -> socket.socket:
        from media.host import MediaHost  # only here: a worker linked to a host process never loads it

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        host = self.embedded = MediaHost()
        host.attach(theirs)

        def run():
            # pjlib asserts (and aborts the process) when called from a thread it does not know,
            # and Python's cyclic GC may run a pjsua2 object's destructor on any thread
            _register_thread("media-host")
            host.run()

        self.embedded_thread = threading.Thread(target=run, name="media-host", daemon=True)
        self.embedded_thread.start()
        return ours

    def _from_host(self, msg: dict) -> None:  # link reader thread
        self.main_q.append((self._on_host_message, (msg,)))  # deque.append is atomic
        self.worker.wake_main()

    def _host_lost(self, link: HostLink) -> None:  # any thread
        self.main_q.append((self._on_host_lost, (link,)))
        self.worker.wake_main()

    def poll(self) -> None:
        """Main thread: run what the host asked for."""
        q = self.main_q
        while q:
            fn, args = q.popleft()
            try:
                fn(*args)
            except Exception:
                log.exception("media bridge main-thread action")

    def _send(self, msg: dict) -> bool:
        """To the host that carries the call ``msg["call"]`` (False: not bridged, or its host is gone)."""
        entry = self.calls.get(msg["call"])
        return entry[1].send(msg) if entry is not None else False

    # ---- main-thread actions requested by the host --------------------------------------------------
    def _on_host_message(self, msg: dict) -> None:
        op = msg["op"]
        call_id = msg["call"]
        if op == "started":
            self.main_stream_started(call_id, msg["ai_connect_ms"], msg.get("stream_sid"))
        elif op == "amd":
            self.main_amd(call_id, msg)
        elif op == "redirect":
            s = self.worker.sessions.get(call_id)
            if s is not None and s.state == "answered":
                self.worker.emit(s, ev.TWIML_REDIRECT, url=msg["url"], method=msg["method"])
        elif op == "ended":
            if msg.get("want_voicemail"):
                self.main_play_voicemail(call_id, msg["reason"], msg["detail"])
            elif msg.get("want_fallback"):
                self.main_play_fallback(call_id, msg["reason"], msg["detail"])
            else:
                self.main_stream_ended(call_id, msg["reason"], msg["detail"], msg.get("last_rtp_at"))

    def _on_host_lost(self, link: HostLink) -> None:
        """The host carrying some of our calls is gone (it died, or the link broke): they end."""
        lost = [call_id for call_id, (_, via) in self.calls.items() if via is link]
        for call_id in lost:
            self.main_stream_ended(call_id, ev.REASON_MEDIA_ERROR, "media host lost")
            self.calls.pop(call_id, None)

    def main_stream_started(self, call_id: str, ai_connect_ms: float, stream_sid: str | None) -> None:
        s = self.worker.sessions.get(call_id)
        if s is None or s.state != "answered":
            return
        self.worker.emit(s, ev.STREAM_STARTED, ai_connect_ms=ai_connect_ms, stream_sid=stream_sid)

    def main_amd(self, call_id: str, msg: dict) -> None:
        """Answering-machine detection decided (the host goes on by itself): report it."""
        s = self.worker.sessions.get(call_id)
        if s is None or s.state != "answered":
            return
        self.worker.emit(s, ev.AMD, answered_by=msg["answered_by"], amd_ms=msg["amd_ms"],
                         amd_evidence=msg.get("amd_evidence"))

    def main_play_voicemail(self, call_id: str, reason: str, detail: str) -> None:
        """A machine answered and the greeting is over: play the voicemail message, then hang up."""
        s = self.worker.sessions.get(call_id)
        key = ((stream_config(s) or {}).get("amd") or {}).get("voicemail_key") if s is not None else None
        self.main_play_fallback(call_id, reason, detail, key=key, label="voicemail message")

    def main_play_fallback(self, call_id: str, reason: str, detail: str, key: str | None = None,
                           label: str = "fallback message") -> None:
        """The agent failed on a call with a fallback message: fetch its audio and play it first
        (also the voicemail message: ``key``, ``label``)."""
        s = self.worker.sessions.get(call_id)
        audio = None
        if s is not None and call_id in self.calls:
            try:
                audio = self.worker.r.get(key or stream_config(s)["fallback_key"])
            except Exception as exc:  # noqa: BLE001 - no message is better than a call left open
                log.warning("call %s: fallback message unavailable: %s", call_id, exc)
        if not audio:
            self.main_stream_ended(call_id, reason, detail)
            return
        log.info("call %s: %s (%s): playing the %s (%.1f s)", call_id, reason, detail, label, len(audio) / 8000)
        self.send_audio(call_id, audio)
        if not self._send({"op": "fallback", "call": call_id, "reason": reason, "detail": detail, "label": label}):
            self.main_stream_ended(call_id, reason, detail)

    def send_audio(self, call_id: str, audio: bytes) -> None:
        """A message (mu-law) for the call's host, in parts; the op that plays it follows."""
        for i in range(0, len(audio), FALLBACK_PART):
            self._send({"op": "fallback_audio", "call": call_id,
                        "audio": base64.b64encode(audio[i:i + FALLBACK_PART]).decode()})

    def _send_announcement(self, call_id: str, key: str) -> None:
        """The recording announcement's audio to the host, before the answer (media/announcement.py)."""
        try:
            audio = self.worker.r.get(key)
        except Exception as exc:  # noqa: BLE001 - the call goes on, recorded without it
            log.warning("call %s: recording announcement unavailable: %s", call_id, exc)
            return
        for i in range(0, len(audio or b""), FALLBACK_PART):
            self._send({"op": "announcement_audio", "call": call_id,
                        "audio": base64.b64encode(audio[i:i + FALLBACK_PART]).decode()})

    def main_stream_ended(self, call_id: str, reason: str, detail: str, last_rtp_at: float | None = None) -> None:
        s = self.worker.sessions.get(call_id)
        if s is None or s.hangup_reason:
            return
        if last_rtp_at:
            s.heard_until = float(last_rtp_at)
        log.info("call %s: agent stream ended (%s: %s): hanging up", call_id, reason, detail)
        self.worker.end_session(s, reason)

    # ---- worker hooks (main thread) -----------------------------------------------------------------
    def on_sdp_created(self, s, prm) -> None:
        if s is None:
            return
        entry = self.calls.get(s.call_id)
        if entry is not None:
            port = entry[0]
        else:
            cfg = stream_config(s)
            if cfg is None:
                return
            cfg["connect_timeout"] = cfg["connect_timeout"] or self.connect_timeout
            cfg["rtp_timeout"] = self.worker.args.rtp_timeout
            if s.cmd.get("record"):  # the media host writes the call's WAV there (media/recording.py)
                cfg["record_dir"] = self.worker.args.recordings_dir
            try:
                rtp, rtcp = _bind_pair(self.bind, self.port_min, self.port_max)
            except OSError as exc:
                self.unbridged[s.call_id] = f"no RTP port: {exc}"
                return
            port = rtp.getsockname()[1]
            try:
                link = self._open(s.call_id, cfg, rtp, rtcp)
                if link is None and cfg["fallback_key"]:
                    # the host can still play the fallback message (no stream: url empty)
                    link = self._open(s.call_id, {**cfg, "url": "", "params": {}}, rtp, rtcp)
                    self.unbridged[s.call_id] = "the stream could not be set up"
            finally:
                rtp.close()  # the host has its own copies now
                rtcp.close()
            if link is None:
                log.error("call %s: no media host takes it: the call ends when answered", s.call_id)
                self.unbridged[s.call_id] = "no media host takes the call"
                return
            self.calls[s.call_id] = (port, link)
            if s.cmd.get("record") and s.cmd.get("recording_announcement_key"):
                self._send_announcement(s.call_id, s.cmd["recording_announcement_key"])
        sdp = prm.sdp.wholeSdp
        new = rewrite_sdp_media(sdp, port, port + 1)
        if new != sdp:
            prm.sdp.wholeSdp = new

    def _open(self, call_id: str, cfg: dict, rtp, rtcp) -> HostLink | None:
        for _attempt in range(2):  # a link that just broke: the second goes to another host
            link = self._link()
            if link.send({"op": "open", "call": call_id, "cfg": cfg}, [rtp.fileno(), rtcp.fileno()]):
                return link
        return None

    def on_stream_created(self, s, prm) -> None:
        """pjsua's own stream of a bridged call: stop it sending. Left alone it sends silence RTP (no
        VAD) to the callee beside ours, a second SSRC that garbles what the callee hears."""
        if s is None or s.call_id not in self.calls:
            return
        try:
            _pjmedia().pjmedia_stream_pause(ctypes.c_void_p(int(prm.stream)), PJMEDIA_DIR_ENCODING)
        except (OSError, AttributeError, TypeError, ValueError) as exc:
            log.warning("call %s: cannot mute pjsua's own RTP (%s)", s.call_id, exc)

    def on_media_state(self, s, call) -> None:
        if s is None or s.call_id not in self.calls:
            return
        try:
            ci = call.getInfo()
            idx = next((m.index for m in ci.media if m.type == pj.PJMEDIA_TYPE_AUDIO
                        and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE), None)
            if idx is None:
                return
            si = call.getStreamInfo(idx)
        except pj.Error as exc:
            log.warning("call %s: no stream info (%s)", s.call_id, describe(exc))
            return
        host, _, port = si.remoteRtpAddress.rpartition(":")
        rtcp = None
        if si.remoteRtcpAddress:
            h2, _, p2 = si.remoteRtcpAddress.rpartition(":")
            if p2.isdigit() and int(p2):
                rtcp = (h2.strip("[]"), int(p2))
        self._send({"op": "remote", "call": s.call_id, "addr": (host.strip("[]"), int(port)), "rtcp": rtcp,
                    "codec": si.codecName, "tx_pt": si.txPt, "rx_pt": si.rxPt,
                    "event_pts": (si.audRxEventPt, si.audTxEventPt)})

    def on_answered(self, s, call) -> None:
        """Start the call's stream; a call that wanted one and could not be bridged ends now (after
        its fallback message, when it has one and a host took the call to play it)."""
        why = self.unbridged.pop(s.call_id, None)
        if s.call_id not in self.calls:
            if (why is not None or stream_config(s) is not None) and s.hangup_reason is None:
                # To be bridged, but no media host took it (on_sdp_created): end it now with a reason
                # rather than leave the callee on a silent line (the worker sends the BYE after this hook).
                log.error("call %s: cannot be bridged (%s): hanging up", s.call_id, why or "no media host took it")
                s.hangup_reason = ev.REASON_BRIDGE_FAILED
            return
        self.on_media_state(s, call)  # in case the media state came before the session was known
        if not self._send({"op": "start", "call": s.call_id, "answered_mono": s.answered_mono}):
            why = why or "the media host did not take the call's start"
        if why is not None:  # from the main loop, not inside pjsua's callback
            log.error("call %s: cannot be bridged (%s)", s.call_id, why)
            self.main_q.append((self.main_play_fallback, (s.call_id, ev.REASON_BRIDGE_FAILED, why)))

    def on_dtmf(self, s, digit: str) -> None:
        if s is not None and s.call_id in self.calls:
            self._send({"op": "dtmf", "call": s.call_id, "digit": digit})

    def send_digits(self, s, digits: str) -> bool:
        """Digits for the callee of a bridged call: to its media host, or kept with the call's command
        when the host does not have the call yet (sent after the answer). False: not a bridged call."""
        if s.call_id in self.calls:
            return self._send({"op": "digits", "call": s.call_id, "digits": digits})
        if stream_config(s) is None or s.direction != ev.DIRECTION_OUTBOUND:
            return False
        s.cmd["send_digits"] = (s.cmd.get("send_digits") or "") + digits
        return True

    def run_twiml(self, s, steps: list) -> bool:
        """A TwiML program for a bridged call: to its media host, or in place of the call's program
        when the host does not have the call yet (run at the answer). False: not a bridged call."""
        if s.call_id in self.calls:  # before the answer the host keeps it for then
            return self._send({"op": "twiml", "call": s.call_id, "steps": steps})
        if stream_config(s) is None:
            return False
        s.twiml = steps
        return True

    def on_call_ended(self, s) -> None:
        """The call is over (pjsua disconnected it): quality into the final event, stop the stream."""
        entry = self.calls.pop(s.call_id, None)
        if entry is None:
            return
        link = entry[1]
        # a failed carrier leg reports nothing (extra goes into every event)
        want = s.state == "answered"
        if not link.send({"op": "close", "call": s.call_id, "report": want}) or not want:
            return
        report = link.wait_report(s.call_id, REPORT_WAIT_S)
        if report is None:
            log.warning("call %s: no media figures from the media host within %.1f s", s.call_id, REPORT_WAIT_S)
        else:
            s.extra.update(report)

    def shutdown(self, timeout: float = 3.0) -> None:
        """Before libDestroy: close every call's stream (sending `stop`), then stop our own host."""
        for call_id, (_, link) in list(self.calls.items()):
            self.calls.pop(call_id, None)
            link.send({"op": "close", "call": call_id})
        for link in (self.host_link, self.local_link):
            if link is not None:
                link.close()
        self.host_link = self.local_link = None
        if self.embedded is not None:
            self.embedded.stop_soon()
            self.embedded_thread.join(timeout + 2)
            self.embedded = None


def _register_thread(name: str) -> None:
    pj.Endpoint.instance().libRegisterThread(name)
