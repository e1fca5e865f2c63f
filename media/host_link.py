"""The worker <-> media host link: one JSON object per SOCK_SEQPACKET packet (messages are listed in
media/host.py). Kept apart so a worker linked to a host process does not load the frame path."""
from __future__ import annotations

import json

MAX_PACKET = 1 << 17  # one link message (fallback audio is sent in parts below this)


def encode(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode()


def decode(data: bytes) -> dict:
    return json.loads(data)
