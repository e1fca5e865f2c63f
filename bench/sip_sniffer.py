"""SIP over UDP on the loopback interface, with the kernel's receive time of each packet (root: an
AF_PACKET socket on lo). What a proxy adds to a call's setup: how long each INVITE and its 200 OK
spent inside it, from the packet reaching its address to the packet leaving it."""
from __future__ import annotations

import socket
import struct
import threading
import time

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35


def _header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()


class SipSniffer:
    def __init__(self, interface: str = "lo"):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((interface, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.settimeout(0.2)
        self.seen: list[tuple[float, str, int, str, int, str, str]] = []  # (t, src, sport, dst, dport, first line, call-id)
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping:
            try:
                data, ancillary, _, (_, _, packet_type, *_) = self.sock.recvmsg(65535, 64)
            except TimeoutError:
                continue
            if packet_type == socket.PACKET_OUTGOING:  # lo shows each packet twice
                continue
            at = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanoseconds = struct.unpack("qq", value[:16])
                    at = seconds + nanoseconds / 1e9
            if len(data) < 42 or data[12:14] != b"\x08\x00" or data[23] != 17:
                continue
            header = (data[14] & 0x0F) * 4
            src, dst = socket.inet_ntoa(data[26:30]), socket.inet_ntoa(data[30:34])
            sport, dport = struct.unpack("!HH", data[14 + header:18 + header])
            text = data[22 + header:].decode("latin-1", "replace")
            first = text.split("\r\n", 1)[0]
            headers = dict(_header(line) for line in text.split("\r\n\r\n", 1)[0].split("\r\n")[1:])
            call_id = headers.get("call-id") or headers.get("i", "")
            if call_id and "INVITE" in (headers.get("cseq") or ""):
                self.seen.append((at, src, sport, dst, dport, first, call_id))

    def stop(self) -> None:
        self.stopping = True
        self.thread.join()
        self.sock.close()

    def proxy_ms(self, proxy: str) -> dict[str, list[float]]:
        """Per call, the time the INVITE and its 200 OK spent in the proxy at address proxy, ms (each, and
        both together: what the proxy adds to the call's setup)."""
        into, out_of = {}, {}
        for at, src, _, dst, _, first, call_id in self.seen:
            kind = "invite" if first.startswith("INVITE ") else "ok" if first.startswith("SIP/2.0 200") else None
            if kind is None:
                continue
            if dst == proxy and src != proxy:
                into.setdefault((kind, call_id), at)
            elif src == proxy and dst != proxy:
                out_of.setdefault((kind, call_id), at)
        spent: dict[str, list[float]] = {"invite": [], "ok": [], "both": []}
        for (kind, call_id), arrived in into.items():
            if (kind, call_id) in out_of:
                spent[kind].append((out_of[kind, call_id] - arrived) * 1000)
        for (kind, call_id), arrived in into.items():
            if kind == "invite" and ("ok", call_id) in into and ("ok", call_id) in out_of and (kind, call_id) in out_of:
                spent["both"].append((out_of[kind, call_id] - arrived + out_of["ok", call_id] - into["ok", call_id]) * 1000)
        return spent
