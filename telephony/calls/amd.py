"""Answering-machine detection settings of a call, from our API or from Twilio's, into the originate
command's ``machine_detection`` (media/amd_call.py runs it in the media host)."""
from __future__ import annotations

from urllib.parse import urlsplit

from media.amd import FAX, MACHINE_VALUES, MODES, AmdParams
from media.amd_call import CONNECT, HANGUP, ON_MACHINE, VOICEMAIL

# answers a campaign counts as "machine" (an outcome of its own, never abandoned)
MACHINE_ANSWERS = (*MACHINE_VALUES, FAX)
__all__ = ["MACHINE_ANSWERS", "MODES", "ON_MACHINE", "CONNECT", "HANGUP", "VOICEMAIL", "config", "from_twilio"]

# Twilio's request parameter -> (our name, type)
TWILIO_PARAMETERS = {
    "MachineDetectionTimeout": ("timeout_s", int),
    "MachineDetectionSpeechThreshold": ("speech_threshold_ms", int),
    "MachineDetectionSpeechEndThreshold": ("speech_end_threshold_ms", int),
    "MachineDetectionSilenceTimeout": ("silence_timeout_ms", int),
}


class AmdSettingsError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def config(mode: str, *, timeout_s=None, speech_threshold_ms=None, speech_end_threshold_ms=None,
           silence_timeout_ms=None, async_amd: bool = False, on_machine: str = CONNECT) -> dict:
    """The command's ``machine_detection`` (without the voicemail audio key); raises AmdSettingsError."""
    if on_machine not in ON_MACHINE:
        raise AmdSettingsError("on_machine", f"must be one of {', '.join(ON_MACHINE)}")
    values = {"mode": mode, "timeout_s": timeout_s, "speech_threshold_ms": speech_threshold_ms,
              "speech_end_threshold_ms": speech_end_threshold_ms, "silence_timeout_ms": silence_timeout_ms}
    try:
        params = AmdParams.from_dict(values)
    except ValueError as error:
        raise AmdSettingsError("machine_detection", str(error)) from None
    return {**params.as_dict(), "async": bool(async_amd), "on_machine": on_machine}


def from_twilio(data) -> dict | None:
    """``MachineDetection`` and its tuning parameters of a Twilio create request (None: no detection).
    Twilio connects whatever answered and lets the application decide: ``on_machine`` is connect."""
    mode = data.get("MachineDetection")
    if not mode:
        return None
    values = {}
    for name, (ours, kind) in TWILIO_PARAMETERS.items():
        if data.get(name) not in (None, ""):
            try:
                values[ours] = kind(data[name])
            except ValueError:
                raise AmdSettingsError(name, f"{name} must be a whole number") from None
    async_amd = str(data.get("AsyncAmd", "false")).lower() == "true"
    callback = data.get("AsyncAmdStatusCallback") or ""
    if callback and urlsplit(callback).scheme not in ("http", "https"):
        raise AmdSettingsError("AsyncAmdStatusCallback", "AsyncAmdStatusCallback must be an http(s) URL")
    try:
        return config(mode, async_amd=async_amd, **values)
    except AmdSettingsError as error:
        raise AmdSettingsError("MachineDetection", str(error)) from None
