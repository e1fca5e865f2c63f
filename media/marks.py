"""The marks of one media stream, for the call's record: each mark's name, when the agent sent it and
when it came back (its audio played to the caller, or dropped by a `clear`).

Marks come back in the order they were sent (the playout buffer reports them in queue order, and a
`clear` returns the pending ones in order), so the n-th mark echoed is the n-th mark sent: no lookup
by name (names may repeat). Only the first ``limit`` marks are kept, so a chatty agent cannot bloat
the record; ``total`` still counts them all.

    log = MarkLog()
    log.sent("greeting")                     # the agent's `mark` arrived
    log.echoed(cleared=False)                # the playout reached it (or a `clear` dropped its audio)
    log.report()                             # [{"name", "sent_at", "played_at", "cleared"?}, ...]
"""
from __future__ import annotations

import threading
import time

__all__ = ["MARKS_KEPT", "MarkLog"]

MARKS_KEPT = 200  # marks kept per call
NAME_CHARS = 64  # a mark name is cut to this many characters in the record


class MarkLog:
    """Thread-safe: ``sent`` runs on the agent socket's loop, ``echoed`` where the playout is pulled."""

    __slots__ = ("limit", "total", "_echoed", "_entries", "_lock")

    def __init__(self, limit: int = MARKS_KEPT):
        self.limit = limit
        self.total = 0  # marks sent by the agent, kept or not
        self._echoed = 0  # marks echoed so far
        self._entries: list[list] = []  # [name, sent wall time, sent monotonic, played wall time, cleared]
        self._lock = threading.Lock()

    def sent(self, name: str) -> None:
        with self._lock:
            self.total += 1
            if len(self._entries) < self.limit:
                self._entries.append([name[:NAME_CHARS], time.time(), time.monotonic(), None, False])

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
