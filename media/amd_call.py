"""Answering-machine detection of one bridged call: the detector (media/amd.py) fed from the call's
RTP, and what the media bridge does with its decision.

The call's configuration (the originate command's ``machine_detection``, docs/media-protocol.md):
``mode`` (``Enable`` | ``DetectMessageEnd``), Twilio's thresholds (``timeout_s``,
``speech_threshold_ms``, ``speech_end_threshold_ms``, ``silence_timeout_ms``), ``async`` (the agent's
stream starts at once and gets the result as an ``answeredBy`` message; otherwise it starts after the
decision with ``AnsweredBy`` in ``start.customParameters``) and ``on_machine``:

* ``connect``: the agent's stream goes ahead whatever answered (it can read ``AnsweredBy``);
* ``hangup``: a machine or a fax ends the call (reason ``machine_detected``);
* ``voicemail``: detection waits for the end of the greeting (``DetectMessageEnd`` whatever
  ``mode`` says), then the voicemail message (``voicemail_key``, 8 kHz mu-law in Redis) is played
  and the call ends (reason ``voicemail_left``); a fax is hung up on.
"""
from __future__ import annotations

from dataclasses import replace

from media.amd import (
    DETECT_MESSAGE_END,
    FAX,
    FRAME_BYTES,
    HUMAN,
    UNKNOWN,
    AmdParams,
    Decision,
    MachineDetector,
)

CONNECT, HANGUP, VOICEMAIL = "connect", "hangup", "voicemail"
ON_MACHINE = (CONNECT, HANGUP, VOICEMAIL)
# what the bridge does after the decision
STREAM, END_CALL, PLAY_VOICEMAIL = "stream", "end_call", "play_voicemail"


class AmdCall:
    __slots__ = ("sync", "on_machine", "voicemail_key", "detector", "decision")

    def __init__(self, cfg: dict, codec_name: str = "pcmu"):
        self.sync = not cfg.get("async")
        self.on_machine = cfg.get("on_machine") or CONNECT
        if self.on_machine not in ON_MACHINE:
            raise ValueError(f"on_machine must be one of {', '.join(ON_MACHINE)}")
        self.voicemail_key = str(cfg.get("voicemail_key") or "")
        params = AmdParams.from_dict(cfg)
        if self.on_machine == VOICEMAIL:
            params = replace(params, mode=DETECT_MESSAGE_END)
        self.detector = MachineDetector(params, codec_name)
        self.decision: Decision | None = None

    def set_codec(self, codec_name: str) -> None:
        self.detector.set_codec(codec_name)

    @property
    def done(self) -> bool:
        return self.decision is not None

    def feed(self, payload: bytes) -> Decision | None:
        """One RTP payload of the caller (one or more 20 ms frames); the decision when it is made."""
        push = self.detector.push
        for i in range(0, len(payload) - FRAME_BYTES + 1, FRAME_BYTES):
            decision = push(payload[i:i + FRAME_BYTES])
            if decision is not None:
                self.decision = decision
                return decision
        return None

    def finish(self) -> Decision:
        """The call ended (or the stream had to start) before a decision."""
        if self.decision is None:
            self.decision = self.detector.finish()
        return self.decision

    def next_step(self) -> str:
        answered_by = self.decision.answered_by
        if answered_by in (HUMAN, UNKNOWN) or self.on_machine == CONNECT:
            return STREAM
        if self.on_machine == VOICEMAIL and answered_by != FAX and self.voicemail_key:
            return PLAY_VOICEMAIL
        return END_CALL

    def result(self) -> dict:
        """The decision as the gateway reports it (event ``amd``, the final event's fields)."""
        d = self.decision
        return {"answered_by": d.answered_by, "amd_ms": d.ms, "amd_evidence": d.evidence}

    def stream_message(self) -> dict:
        """The decision as the agent gets it (``answeredBy`` message, Twilio's callback names)."""
        return {"answeredBy": self.decision.answered_by, "machineDetectionDuration": str(self.decision.ms)}
