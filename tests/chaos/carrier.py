"""SIPp carriers for the chaos suite, and what they saw, counted at the carrier: every INVITE with its
number, answer and end, so duplicates, concurrency and durations are the far end's own figures.

Each carrier writes SIPp's short message trace (one line per SIP message, flushed at once, so a
SIGKILLed carrier's trace is complete up to its death). A carrier killed and started again on the
same port writes a new trace; its calls still open at the kill end at the kill.
"""
from __future__ import annotations

import math
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from media import codec
from tests.conversation import write_rtp_pcap
from tests.stack import Process
from tests.support import free_media_port, free_udp_port

SCENARIO = Path(__file__).with_name("carrier.xml")


def tone_pcap(path: Path, seconds: float = 6.0) -> Path:
    """The carrier's side of the conversation: a 440 Hz tone as PCMU RTP, longer than any call."""
    frames = []
    for k in range(int(seconds / 0.02)):
        samples = [int(8000 * math.sin(2 * math.pi * 440 * (k * 160 + i) / 8000)) for i in range(160)]
        frames.append((0, codec.lin16_to_ulaw(struct.pack("<160h", *samples))))
    return write_rtp_pcap(path, frames)


@dataclass
class Dialog:
    """One INVITE dialog as the carrier saw it (times: unix seconds)."""

    call_id: str
    number: str
    invited_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    ended_by: str = ""  # carrier (its BYE), platform (BYE or CANCEL), refused, carrier_died

    @property
    def duration(self) -> float | None:
        if self.answered_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.answered_at


class Carrier:
    """A SIPp carrier on a fixed port of 127.0.0.1, started again on the same port after a kill."""

    def __init__(self, name: str, work_dir: Path, pcap: Path):
        self.name, self.work_dir, self.port = name, work_dir, free_udp_port()
        text = SCENARIO.read_text().replace("@PCAP@", str(pcap))
        self.scenario = work_dir / f"carrier-{self.port}.xml"
        self.scenario.write_text(text)
        self.runs: list[tuple[Path, float | None]] = []  # (trace, killed at)
        self.process: Process | None = None

    def start(self) -> Carrier:
        trace = self.work_dir / f"carrier-{self.port}-{len(self.runs)}.trace"
        self.process = Process(f"carrier-{self.port}-{len(self.runs)}", [
            shutil.which("sipp"), "-sf", str(self.scenario), "-i", "127.0.0.1", "-p", str(self.port),
            "-mp", str(free_media_port()), "-nostdin", "-trace_shortmsg", "-shortmessage_file", str(trace),
            "-trace_err", "-error_file", str(self.work_dir / f"carrier-{self.port}-errors.log"),
        ], self.work_dir)
        self.runs.append((trace, None))
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.proc.poll() is None

    def kill(self) -> float:
        self.process.kill()
        killed_at = time.time()
        self.runs[-1] = (self.runs[-1][0], killed_at)
        return killed_at

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(5)

    def dialogs(self) -> list[Dialog]:
        found: list[Dialog] = []
        for trace, killed_at in self.runs:
            run = _read_trace(trace)
            for dialog in run:
                if dialog.ended_at is None and killed_at is not None:
                    dialog.ended_at, dialog.ended_by = killed_at, "carrier_died"
            found.extend(run)
        return found


def _read_trace(trace: Path) -> list[Dialog]:
    dialogs: dict[str, Dialog] = {}
    if not trace.exists():
        return []
    for line in trace.read_text(errors="replace").splitlines():
        fields = line.split("\t")
        if len(fields) < 7:
            continue
        at, direction, call_id, cseq, first = float(fields[2]), fields[3], fields[4], fields[5], fields[6]
        method = cseq.split()[-1]
        dialog = dialogs.get(call_id)
        if dialog is None:
            if direction == "R" and first.startswith("INVITE "):
                number = first.split()[1].removeprefix("sip:").split("@")[0]
                dialogs[call_id] = Dialog(call_id, number, at)
            continue
        if dialog.ended_at is not None:
            continue
        if first.startswith("SIP/2.0 ") and method == "INVITE" and direction == "S":
            code = int(first.split()[1])
            if code == 200:
                dialog.answered_at = dialog.answered_at or at
            elif code >= 300:
                dialog.ended_at, dialog.ended_by = at, "refused"
        elif first.startswith("BYE "):
            dialog.ended_at, dialog.ended_by = at, "carrier" if direction == "S" else "platform"
        elif first.startswith("CANCEL ") and direction == "R":
            dialog.ended_at, dialog.ended_by = at, "platform"
    return list(dialogs.values())


def peak_concurrency(dialogs: list[Dialog], now: float) -> tuple[int, float | None]:
    """The most calls the carrier held at once (INVITE received to end), and when."""
    steps = sorted([(d.invited_at, 1) for d in dialogs] + [(d.ended_at or now, -1) for d in dialogs],
                   key=lambda step: (step[0], step[1]))
    peak, at, current = 0, None, 0
    for when, change in steps:
        current += change
        if current > peak:
            peak, at = current, when
    return peak, at
