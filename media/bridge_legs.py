"""Two answered legs of one call joined in the media host: a transfer to a person.

The caller's leg (the call, until now bridged to its agent) and the transfer leg (the person the
platform dialed) are two ``CallBridge``s of the same host; once joined, each one's received audio
plays to the other on the host's 20 ms clock, exactly as agent audio plays to a caller: same RTP
sender (continuous sequence numbers and timestamps), same recording hook, no WebSocket.

* cold: the agent's stream ends (``stop``) when the legs are joined.
* warm: the agent stays: it hears both sides mixed into its one stream, and both legs hear it mixed
  with the other leg; when it closes its socket the two legs stay joined (``agent_left``).
* whisper (either mode): a message the person hears when they answer, before the legs are joined.

Each direction keeps at most ``MAX_QUEUED`` bytes (100 ms): the two legs' packets arrive on their
own networks' timing and leave on our clock; a direction that falls behind drops its oldest audio
rather than grow the delay.
"""
from __future__ import annotations

from array import array

from media import codec

FRAME_BYTES = 160
MAX_QUEUED = 5 * FRAME_BYTES
COLD, WARM = "cold", "warm"

_TO_LIN = {"pcmu": codec.ulaw_to_lin16, "pcma": codec.alaw_to_lin16}
_FROM_LIN = {"pcmu": codec.lin16_to_ulaw, "pcma": codec.lin16_to_alaw}


def convert(frame: bytes, src: str, dst: str) -> bytes:
    """G.711 audio from one leg's codec to the other's."""
    if src == dst:
        return frame
    return codec.ulaw_to_alaw(frame) if src == "pcmu" else codec.alaw_to_ulaw(frame)


def mix(a: bytes, b: bytes, law: str) -> bytes:
    """Two G.711 frames of the same codec, added (clipped) into one."""
    x, y = array("h", _TO_LIN[law](a)), array("h", _TO_LIN[law](b))
    out = array("h", (max(-32768, min(32767, p + q)) for p, q in zip(x, y, strict=False)))
    return _FROM_LIN[law](out.tobytes())


def join(caller, person, mode: str, whisper: bytes = b"") -> None:
    """Join the two legs; with a ``whisper`` (mu-law) the person hears it first, the caller meanwhile
    stays with the agent."""
    if not whisper:
        JoinedLegs(caller, person, mode)
        return

    def whispered():
        if not (caller.closing or person.closing):
            JoinedLegs(caller, person, mode)
    person.fallback_done = whispered
    person.fallback = (convert(whisper, "pcmu", person.codec), "", "")
    person.fallback_pos = 0


class JoinedLegs:
    """The audio between a call's caller leg and its transfer leg (host loop thread only)."""

    def __init__(self, caller, person, mode: str):
        self.caller = caller
        self.person = person
        self.mode = mode
        self.agent_on = mode == WARM
        self.queued = {id(caller): bytearray(), id(person): bytearray()}  # audio waiting to play to that leg
        self.agent_frame: bytes | None = None  # warm: the agent's frame of this tick, for the person too
        self.to_agent = bytearray()  # warm: what the person said, mixed into the caller's frames to the agent
        caller.joined = person.joined = self
        if mode == COLD and caller.session is not None:
            caller.session.stop()  # the agent's stream ends; the call goes on between the two people

    def other(self, leg):
        return self.person if leg is self.caller else self.caller

    def heard(self, leg, payload: bytes) -> None:
        """Audio received on ``leg``: it plays to the other leg."""
        to = self.other(leg)
        q = self.queued[id(to)]
        audio = convert(payload, leg.codec, to.codec)
        q += audio
        if len(q) > MAX_QUEUED:
            del q[:len(q) - 2 * FRAME_BYTES]
        if self.agent_on and leg is self.person:
            a = self.to_agent
            a += audio
            if len(a) > MAX_QUEUED:
                del a[:len(a) - 2 * FRAME_BYTES]

    def frame_for(self, leg) -> bytes | None:
        """The next 20 ms to send on ``leg`` (its codec), or None for silence."""
        q = self.queued[id(leg)]
        frame = None
        if len(q) >= FRAME_BYTES:
            frame = bytes(q[:FRAME_BYTES])
            del q[:FRAME_BYTES]
        if not self.agent_on:
            return frame
        if leg is self.caller:
            agent = self.agent_frame = leg._agent_frame()
        else:
            agent = convert(self.agent_frame, self.caller.codec, leg.codec) if self.agent_frame else None
        if agent is None or frame is None:
            return agent or frame
        return mix(frame, agent, leg.codec)

    def for_agent(self, caller_frame: bytes) -> bytes:
        """Warm: the caller's frame mixed with what the person said meanwhile (mu-law/a-law of the
        caller's leg), so the agent hears both sides in its one stream."""
        a = self.to_agent
        if len(a) < FRAME_BYTES or len(caller_frame) != FRAME_BYTES:
            return caller_frame
        person = bytes(a[:FRAME_BYTES])
        del a[:FRAME_BYTES]
        return mix(caller_frame, person, self.caller.codec)

    def agent_left(self) -> bool:
        """Warm: the agent closed its stream; the two people stay connected. False when not warm."""
        if not self.agent_on:
            return False
        self.agent_on = False
        self.agent_frame = None
        self.to_agent.clear()
        return True

    def split(self) -> None:
        """One leg ended: the other no longer hears it."""
        self.caller.joined = self.person.joined = None
