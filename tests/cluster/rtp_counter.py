"""The far end's phone line: counts the RTP packets arriving at one UDP port, per sending port
(one per call), and echoes them, and keeps each sender's first and last arrival and longest silence, rewritten to a
JSON file twice a second. `python -m tests.cluster.rtp_counter ADDRESS PORT FILE`

Arrival times are the kernel's (SO_TIMESTAMPNS), not when this process got round to reading: on a
busy machine the line itself may wait for a core, and that is no silence of the call's."""
from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; its control messages have the same number


def main(address: str, port: int, path: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.settimeout(0.1)
    senders: dict[str, dict] = {}
    written = 0.0
    while True:
        try:
            packet, control, _, (host, sender_port) = sock.recvmsg(2048, socket.CMSG_SPACE(16))
            sock.sendto(packet, (host, sender_port))  # the line echoes (RTP back from the address in the SDP)
            now = arrival(control)
            seen = senders.setdefault(f"{host}:{sender_port}", {"packets": 0, "first": now, "last": now, "gap": 0.0})
            seen["packets"] += 1
            seen["gap"] = max(seen["gap"], now - seen["last"])
            seen["last"] = now
        except TimeoutError:
            pass
        if time.time() - written >= 0.5:
            with open(f"{path}.new", "w") as out:
                json.dump(senders, out)
            os.replace(f"{path}.new", path)
            written = time.time()


def arrival(control: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in control:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds + nanoseconds / 1e9
    return time.time()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
