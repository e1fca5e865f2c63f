"""Playout buffer for agent -> caller audio, pulled one frame at a time by the caller's clock.

Rules (the same text is in docs/media-protocol.md):

* ``append(audio)``: agent ``media`` payloads of any size are queued in arrival order. Nothing is
  paced by arrival time: the caller side calls ``pull_frame()`` once per 20 ms tick.
* ``mark(name)``: the mark is queued at the current end of the audio. It is reported by the
  ``pull_frame()`` call that hands out the last byte queued before it (so it is reported when that
  audio goes to the caller), or by the next ``pull_frame()`` if no audio was queued before it
  (buffer empty: the mark is reported at that pull, with ``frame=None``).
* Partial frames: frames are always exactly ``frame_bytes`` long. Audio that does not fill a whole
  frame stays queued (the agent is probably streaming more) and the pull returns ``None`` for that
  tick, except in two cases where the partial frame is completed with silence (0xFF for mu-law,
  0x00 for L16) at once: the agent sends a ``mark`` after it (end of an utterance), or the stream
  ends (``end()``).
* ``clear()``: drops all queued audio at once and returns the names of the marks still pending, in
  queue order (the session sends them back to the agent as ``mark`` events).
* Bound: at most ``max_bytes`` of audio are queued (60 s by default). On overflow the **newest**
  audio is dropped (the part of the payload that does not fit): what is already scheduled plays
  on unchanged and the marks stay where the agent put them. Dropped bytes and overflow events are
  counted.

Thread-safe: ``append``/``mark``/``clear`` run on the event loop while ``pull_frame`` is called by
the gateway's media clock thread; one short lock per call.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["PlayoutBuffer", "PlayoutStats"]


@dataclass(slots=True)
class PlayoutStats:
    frames_played: int = 0  # pulls that returned audio
    idle_pulls: int = 0  # pulls that returned None (nothing, or only a partial frame, queued)
    bytes_in: int = 0  # bytes accepted by append()
    pad_bytes: int = 0  # silence added to complete partial frames
    overflow_bytes: int = 0  # bytes dropped because the buffer was full
    overflow_events: int = 0  # append() calls that dropped something
    cleared_bytes: int = 0  # bytes dropped by clear()
    clears: int = 0
    marks_reported: int = 0  # by pull_frame() and clear()


class PlayoutBuffer:
    def __init__(
        self,
        frame_bytes: int = 160,
        silence: int = 0xFF,
        max_seconds: float = 60.0,
        bytes_per_second: int = 8000,
    ) -> None:
        if frame_bytes <= 0:
            raise ValueError("frame_bytes must be positive")
        self.frame_bytes = frame_bytes
        self.silence_byte = silence
        self.max_bytes = max(frame_bytes, int(max_seconds * bytes_per_second))
        self.stats = PlayoutStats()
        self._lock = threading.Lock()
        self._chunks: deque[bytes] = deque()
        self._head_off = 0  # bytes of _chunks[0] already played
        # Absolute byte positions since the last clear(): _read (played) <= _written (queued).
        self._read = 0
        self._written = 0
        self._marks: deque[tuple[int, str]] = deque()  # (position, name), positions non-decreasing
        self._silence_frame = bytes((silence,)) * frame_bytes

    # -- producer side (agent) ------------------------------------------------------------------------
    def append(self, audio: bytes) -> int:
        """Queue audio; returns the number of bytes dropped by overflow (0 normally)."""
        n = len(audio)
        if not n:
            return 0
        with self._lock:
            room = self.max_bytes - (self._written - self._read)
            dropped = 0
            if n > room:
                dropped = n - max(room, 0)
                audio = bytes(audio[:max(room, 0)])
                self.stats.overflow_bytes += dropped
                self.stats.overflow_events += 1
                n = len(audio)
                if not n:
                    return dropped
            self._chunks.append(bytes(audio))
            self._written += n
            self.stats.bytes_in += n
            return dropped

    def mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far (completing a partial frame with silence)."""
        with self._lock:
            self._pad_locked()
            self._marks.append((self._written, name))

    def end(self) -> None:
        """The stream ends: complete a partial trailing frame with silence so it can be played."""
        with self._lock:
            self._pad_locked()

    def clear(self) -> list[str]:
        """Drop all queued audio at once; return the pending marks' names in order."""
        with self._lock:
            names = [name for _, name in self._marks]
            self.stats.cleared_bytes += self._written - self._read
            self.stats.clears += 1
            self.stats.marks_reported += len(names)
            self._chunks.clear()
            self._head_off = 0
            self._read = self._written = 0
            self._marks.clear()
            return names

    # -- consumer side (caller clock) -----------------------------------------------------------------
    def pull_frame(self) -> tuple[bytes | None, list[str]]:
        """Take exactly one frame (or None) and the marks reached by taking it."""
        fb = self.frame_bytes
        with self._lock:
            frame: bytes | None = None
            if self._written - self._read >= fb:
                frame = self._take_locked(fb)
                self._read += fb
                self.stats.frames_played += 1
            else:
                self.stats.idle_pulls += 1
            reached: list[str] = []
            marks = self._marks
            while marks and marks[0][0] <= self._read:
                reached.append(marks.popleft()[1])
            if reached:
                self.stats.marks_reported += len(reached)
            return frame, reached

    # -- introspection ---------------------------------------------------------------------------------
    @property
    def queued_bytes(self) -> int:
        with self._lock:
            return self._written - self._read

    @property
    def pending_marks(self) -> list[str]:
        with self._lock:
            return [name for _, name in self._marks]

    def __len__(self) -> int:
        return self.queued_bytes

    # -- internals (lock held) ---------------------------------------------------------------------------
    def _pad_locked(self) -> None:
        partial = (self._written - self._read) % self.frame_bytes
        if partial:
            pad = self.frame_bytes - partial
            # Padding may exceed max_bytes by less than a frame; that keeps marks exact.
            self._chunks.append(self._silence_frame[:pad])
            self._written += pad
            self.stats.pad_bytes += pad

    def _take_locked(self, n: int) -> bytes:
        chunks = self._chunks
        head = chunks[0]
        off = self._head_off
        avail = len(head) - off
        if avail > n:  # common case for big agent payloads: slice out of the head chunk
            self._head_off = off + n
            return head[off:off + n]
        if avail == n:  # common case for 160-byte agent payloads
            chunks.popleft()
            self._head_off = 0
            return head if off == 0 else head[off:]
        parts = []
        need = n
        while need:
            head = chunks[0]
            avail = len(head) - off
            if avail <= need:
                parts.append(head[off:] if off else head)
                chunks.popleft()
                need -= avail
                off = 0
            else:
                parts.append(head[off:off + need])
                off += need
                need = 0
        self._head_off = off
        return b"".join(parts)
