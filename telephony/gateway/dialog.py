"""A call's SIP dialog, kept in Redis so that another process can end the call at the carrier.

A worker that dies (SIGKILL, crash) leaves its calls up at the carrier: nobody sends their BYE, the
carrier keeps counting them against its cap and the callee hears silence until the carrier gives
up. So each worker keeps, in ``call:{id}`` field ``dialog``, what a BYE (answered call) or a CANCEL
(ringing call) needs — RFC 3261 section 12: Call-ID, local and remote URI with their tags, the
route set, the remote target, our CSeq, the carrier's address — and the supervisor ends the calls
of a dead worker from a plain UDP socket (``end_calls``). The worker's own SIP port is free again
once it died, so the supervisor sends from it: the far end's responses (and the 487 of a
cancelled INVITE) come back to the address in our Via as they would have.

Pure Python, no pjsua2: the worker builds the records from the raw messages pjsua shows it.
"""
from __future__ import annotations

import logging
import secrets
import socket
import time

from telephony.sip_head import head_lines, header_fields, split_header_list

log = logging.getLogger("gateway.dialog")

T1, T2 = 0.5, 4.0  # RFC 3261 UDP retransmission timers
USER_AGENT = "voiceplatform-gw"


def headers(raw: str) -> tuple[str, dict[str, list[str]]]:
    """(start line, {lower-case header name: [values in order]}) of a SIP message; comma-separated
    Via/Route/Record-Route values are split."""
    lines = head_lines(raw)
    out: dict[str, list[str]] = {}
    for name, value in header_fields(lines):
        if name in ("via", "route", "record-route"):
            out.setdefault(name, []).extend(split_header_list(value))
        else:
            out.setdefault(name, []).append(value)
    return lines[0] if lines else "", out




def _uri(name_addr: str) -> str:
    """The URI inside a name-addr ('"x" <sip:a@b;lr>;tag=1' -> 'sip:a@b;lr')."""
    if "<" in name_addr:
        return name_addr.split("<", 1)[1].split(">", 1)[0]
    return name_addr.split(";", 1)[0].strip()


def _host_port(uri: str) -> tuple[str, int]:
    """(host, port) a SIP URI points at (5060 when it names none)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split("@", 1)[-1].split(";", 1)[0].split("?", 1)[0]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.lstrip(":")
    else:
        host, _, port = rest.partition(":")
    return host, int(port) if port.isdigit() else 5060


def _peer(src: str) -> list:
    host, _, port = src.rpartition(":")
    return [host.strip("[]"), int(port)]


def from_uac_response(ok: str, peer: str) -> dict | None:
    """The dialog of an outbound call from the 200 OK we received for its INVITE (``peer``: the
    address it came from, "ip:port"). Route set: the Record-Route in reverse (RFC 3261 12.1.2)."""
    start, h = headers(ok)
    try:
        cseq = int(h["cseq"][0].split()[0])
        return {"call_id": h["call-id"][0], "local": h["from"][0], "remote": h["to"][0],
                "target": _uri(h["contact"][0]), "routes": list(reversed(h.get("record-route", []))),
                "cseq": cseq, "peer": _peer(peer), "transport": "udp"}
    except (KeyError, IndexError, ValueError):
        log.warning("no dialog from response %r", start)
        return None


def from_uas_request(invite: str, ok: str, peer: str) -> dict | None:
    """The dialog of an inbound call: the caller's INVITE (remote target, route set in order) and
    the 200 OK we sent (our To tag)."""
    _, req = headers(invite)
    _, resp = headers(ok)
    try:
        return {"call_id": req["call-id"][0], "local": resp["to"][0], "remote": req["from"][0],
                "target": _uri(req["contact"][0]), "routes": req.get("record-route", []),
                "cseq": 1, "peer": _peer(peer), "transport": "udp"}
    except (KeyError, IndexError):
        log.warning("no dialog from the inbound INVITE")
        return None


def early_from_response(provisional: str, uri: str, peer: str) -> dict | None:
    """What a CANCEL of a ringing outbound INVITE needs, from one of its provisional responses
    (RFC 3261 9.1: same Request-URI, top Via, Call-ID, From, To and CSeq number as the INVITE)."""
    _, h = headers(provisional)
    try:
        to = h["to"][0]
        return {"call_id": h["call-id"][0], "local": h["from"][0], "remote": to.split(";tag=", 1)[0],
                "via": h["via"][0], "cseq": int(h["cseq"][0].split()[0]), "uri": uri, "peer": _peer(peer),
                "transport": "udp"}
    except (KeyError, IndexError, ValueError):
        return None


def build_bye(d: dict, via_host: str, via_port: int, reason: str) -> tuple[bytes, str]:
    """(BYE as bytes, its branch) for dialog ``d``. The CSeq is well above the INVITE's: pjsua may
    have sent re-INVITEs/UPDATEs (session refreshes) since the dialog was stored, and a UAS only
    rejects a CSeq lower than the last it saw."""
    branch = "z9hG4bK" + secrets.token_hex(8)
    lines = [f"BYE {d['target']} SIP/2.0",
             f"Via: SIP/2.0/UDP {via_host}:{via_port};branch={branch};rport",
             "Max-Forwards: 70"]
    lines += [f"Route: {r}" for r in d.get("routes") or []]
    lines += [f"From: {d['local']}", f"To: {d['remote']}", f"Call-ID: {d['call_id']}",
              f"CSeq: {int(d['cseq']) + 1000} BYE", f'Reason: Q.850;cause=16;text="{reason}"',
              f"User-Agent: {USER_AGENT}", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode(), branch


def build_cancel(e: dict) -> tuple[bytes, str]:
    branch = e["via"].split("branch=", 1)[1].split(";", 1)[0] if "branch=" in e["via"] else ""
    lines = [f"CANCEL {e['uri']} SIP/2.0", f"Via: {e['via']}", "Max-Forwards: 70",
             f"From: {e['local']}", f"To: {e['remote']}", f"Call-ID: {e['call_id']}",
             f"CSeq: {int(e['cseq'])} CANCEL", f"User-Agent: {USER_AGENT}", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode(), branch


def build_ack_bye(ok: str, invite_uri: str, via_host: str, via_port: int, reason: str) -> list[bytes]:
    """A 200 OK that crossed our CANCEL: ACK it and BYE the dialog it made."""
    d = from_uac_response(ok, "0.0.0.0:0")
    if d is None:
        return []
    route = [f"Route: {r}" for r in d["routes"]]
    ack = "\r\n".join([f"ACK {d['target']} SIP/2.0",
                       f"Via: SIP/2.0/UDP {via_host}:{via_port};branch=z9hG4bK{secrets.token_hex(8)};rport",
                       "Max-Forwards: 70", *route, f"From: {d['local']}", f"To: {d['remote']}",
                       f"Call-ID: {d['call_id']}", f"CSeq: {d['cseq']} ACK", "Content-Length: 0", "", ""])
    return [ack.encode(), build_bye(d, via_host, via_port, reason)[0]]


def build_non2xx_ack(e: dict, response: str) -> bytes:
    """ACK of a failure response to our INVITE (RFC 3261 17.1.1.3: same branch, the response's To)."""
    _, h = headers(response)
    to = h.get("to", [e["remote"]])[0]
    return "\r\n".join([f"ACK {e['uri']} SIP/2.0", f"Via: {e['via']}", "Max-Forwards: 70",
                         f"From: {e['local']}", f"To: {to}", f"Call-ID: {e['call_id']}",
                         f"CSeq: {int(e['cseq'])} ACK", "Content-Length: 0", "", ""]).encode()


def destination(d: dict) -> tuple[str, int]:
    """Where an in-dialog request goes: the first route (loose routing), else the remote target;
    a name that does not resolve falls back to the address the carrier's messages came from."""
    uri = _uri(d["routes"][0]) if d.get("routes") else d.get("target") or d.get("uri")
    host, port = _host_port(uri)
    try:
        return socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4][:2]
    except (socket.gaierror, UnicodeError):
        return tuple(d["peer"])


def _response(data: bytes) -> tuple[int, str, str, str] | None:
    """(status, Call-ID, CSeq method, raw text) of a response; None for anything else."""
    try:
        text = data.decode("utf-8", "replace")
    except Exception:  # noqa: BLE001
        return None
    start, h = headers(text)
    parts = start.split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        return None
    try:
        return int(parts[1]), h["call-id"][0], h["cseq"][0].split()[-1].upper(), text
    except (KeyError, IndexError):
        return None


def end_calls(calls: dict[str, dict], bind: tuple[str, int], reason: str, timeout: float = 8.0,
              via_host: str | None = None, on_sent=None) -> dict[str, tuple[str, float | None]]:
    """End calls at the carrier: BYE for answered ones (``{"dialog": d}``), CANCEL for ringing ones
    (``{"early": e}``), from ``bind`` (the dead worker's SIP address; any free port if it is taken),
    retransmitted on RFC 3261 timers until a final response or ``timeout``.

    Returns {call id: (how, when)}: how is "bye_answered" / "cancelled" (the carrier confirmed the
    call is over: 2xx, 481 or any final response) or "no_response"; when is the time the first
    request went out (the call's end as the carrier sees it), None if nothing could be sent.
    ``on_sent(call_id, at)`` is called as each first request leaves."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(bind)
    except OSError:
        sock.bind((bind[0], 0))
    bound_host, via_port = sock.getsockname()
    via_host = via_host or (bound_host if bound_host != "0.0.0.0" else "127.0.0.1")
    pending: dict[tuple[str, str], dict] = {}  # (Call-ID, method) -> transaction
    results: dict[str, tuple[str, float | None]] = {}
    now = time.monotonic()
    for call_id, c in calls.items():
        if c.get("dialog"):
            d = c["dialog"]
            msg, _ = build_bye(d, via_host, via_port, reason)
            key, dest, early = (d["call_id"], "BYE"), destination(d), None
        elif c.get("early"):
            e = c["early"]
            msg, _ = build_cancel(e)
            key, dest, early = (e["call_id"], "CANCEL"), tuple(e["peer"]), e
        else:
            continue
        try:
            sock.sendto(msg, dest)
            sent_at = time.time()
        except OSError as exc:
            log.warning("call %s: cannot send %s to %s: %s", call_id, key[1], dest, exc)
            results[call_id] = ("no_response", None)
            continue
        if on_sent:
            on_sent(call_id, sent_at)
        results[call_id] = ("no_response", sent_at)
        pending[key] = {"call": call_id, "msg": msg, "dest": dest, "next": now + T1, "interval": T1,
                        "early": early}
    deadline = now + timeout
    sock.settimeout(0.05)
    while pending and time.monotonic() < deadline:
        try:
            data, _addr = sock.recvfrom(65535)
        except TimeoutError:
            data = None
        except OSError:
            data = None
        if data:
            parsed = _response(data)
            if parsed:
                code, sip_call_id, method, text = parsed
                if method == "INVITE":  # the ringing INVITE's own answer, after our CANCEL
                    tx = pending.get((sip_call_id, "CANCEL"))
                    if tx is not None and code >= 200:
                        if 200 <= code < 300:
                            for m in build_ack_bye(text, tx["early"]["uri"], via_host, via_port, reason):
                                sock.sendto(m, tx["dest"])
                        else:  # 487: the ACK the INVITE transaction would have sent
                            sock.sendto(build_non2xx_ack(tx["early"], text), tx["dest"])
                        results[tx["call"]] = ("cancelled", results[tx["call"]][1])
                        pending.pop((sip_call_id, "CANCEL"))
                else:
                    tx = pending.get((sip_call_id, method))
                    if tx is not None and code >= 200:
                        if method == "BYE":
                            results[tx["call"]] = ("bye_answered", results[tx["call"]][1])
                            pending.pop((sip_call_id, method))
                        # a CANCEL's 200 only says it arrived: wait for the INVITE's 487
        t = time.monotonic()
        for tx in pending.values():
            if t >= tx["next"]:
                try:
                    sock.sendto(tx["msg"], tx["dest"])
                except OSError:
                    pass
                tx["interval"] = min(tx["interval"] * 2, T2)
                tx["next"] = t + tx["interval"]
    sock.close()
    return results
