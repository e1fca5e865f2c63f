"""The marks of one media stream, for the call's record: each mark's name, when the agent sent it and
when it came back (its audio played to the caller, or dropped by a `clear`).

Marks come back in the order they were sent (the playout buffer reports them in queue order, and a
`clear` returns the pending ones in order), so the n-th mark echoed is the n-th mark sent: no lookup
by name (names may repeat). Only the first ``limit`` marks are kept, and no more than ``max_bytes``
of them as JSON (the report travels in one link packet, media/host_link.py), so a chatty agent cannot
bloat the record; ``total`` still counts them all.

    log = MarkLog()
    log.sent("greeting")                     # the agent's `mark` arrived
    log.echoed(cleared=False)                # the playout reached it (or a `clear` dropped its audio)
    log.report()                             # [{"name", "sent_at", "played_at", "cleared"?}, ...]
"""
from __future__ import annotations

import json
import threading
import time

__all__ = ["MARKS_KEPT", "MarkLog"]

MARKS_KEPT = 200  # marks kept per call
MARKS_BYTES = 32_000  # and at most this much of them as JSON (names of escaped characters are long)
NAME_CHARS = 64  # a mark name is cut to this many characters in the record
ENTRY_BYTES = 80  # a mark's JSON besides its name: {"name":,"sent_at":…,"played_at":…,"cleared":true},


class MarkLog:
    """Thread-safe: ``sent`` runs on the agent socket's loop, ``echoed`` where the playout is pulled."""

    __slots__ = ("limit", "max_bytes", "total", "_bytes", "_full", "_echoed", "_entries", "_lock")

    def __init__(self, limit: int = MARKS_KEPT, max_bytes: int = MARKS_BYTES):
        self.limit, self.max_bytes = limit, max_bytes
        self.total = 0  # marks sent by the agent, kept or not
        self._bytes = 0  # the kept marks' JSON, at most
        self._full = False  # a mark was not kept: later ones are not either (the record keeps the first)
        self._echoed = 0  # marks echoed so far
        self._entries: list[list] = []  # [name, sent wall time, sent monotonic, played wall time, cleared]
        self._lock = threading.Lock()

    def sent(self, name: str) -> None:
        with self._lock:
            self.total += 1
            if self._full:
                return
            name = name[:NAME_CHARS]
            size = len(json.dumps(name)) + ENTRY_BYTES
            if len(self._entries) >= self.limit or self._bytes + size > self.max_bytes:
                self._full = True
                return
            self._bytes += size
            self._entries.append([name, time.time(), time.monotonic(), None, False])

    def echoed(self, cleared: bool = False) -> None:
        with self._lock:
            n = self._echoed
            self._echoed += 1
            if n < len(self._entries):
                entry = self._entries[n]
                # wall time of the echo from the monotonic interval: the delay stays true if the clock steps
                entry[3] = entry[1] + (time.monotonic() - entry[2])
                entry[4] = cleared

    def report(self) -> list[dict]:
        """The kept marks, oldest first; ``played_at`` is None for a mark the call ended before."""
        with self._lock:
            out = []
            for name, sent_at, _, played_at, cleared in self._entries:
                mark = {"name": name, "sent_at": round(sent_at, 3),
                        "played_at": None if played_at is None else round(played_at, 3)}
                if cleared:
                    mark["cleared"] = True
                out.append(mark)
            return out
