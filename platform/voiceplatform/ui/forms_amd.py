"""The campaign builder's answering-machine settings (shown on the AI agent step): detect or not, what
to do on a machine (hang up, leave a voicemail message spoken from text or from an uploaded WAV, or
connect the agent anyway) and the detection's timeouts."""
from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from media import wav_audio
from media.amd import DETECT_MESSAGE_END, ENABLE, AmdParams
from media.amd_call import CONNECT, HANGUP, VOICEMAIL

TIMEOUT_S = AmdParams.RANGES["timeout_s"]
SILENCE_MS = AmdParams.RANGES["silence_timeout_ms"]


class MachineDetectionForm(forms.Form):
    machine_detection = forms.ChoiceField(
        required=False, label="Answering-machine detection", widget=forms.RadioSelect,
        choices=[("", "Off: every answered call goes to the agent"),
                 (ENABLE, "On: decide as soon as it is known (people reach the agent sooner)"),
                 (DETECT_MESSAGE_END, "On, and wait for the end of a machine's greeting (the beep)")],
    )
    on_machine = forms.ChoiceField(
        required=False, label="When a machine answers", widget=forms.RadioSelect, initial=HANGUP,
        choices=[(HANGUP, "Hang up"), (VOICEMAIL, "Leave a voicemail message after the beep, then hang up"),
                 (CONNECT, "Connect the agent anyway")],
    )
    voicemail_message = forms.CharField(
        required=False, label="Voicemail message (text)", widget=forms.Textarea(attrs={"rows": 3}),
        help_text="spoken with the platform's voice, unless you upload a recording",
    )
    voicemail_audio = forms.FileField(
        required=False, label="…or a recorded voicemail message",
        widget=forms.ClearableFileInput(attrs={"accept": ".wav,audio/wav,audio/x-wav"}),
        help_text=f"{wav_audio.ACCEPTED[0].upper()}{wav_audio.ACCEPTED[1:]}",
    )
    remove_voicemail_audio = forms.BooleanField(required=False, label="Remove the recorded message (use the text)")
    machine_detection_timeout = forms.IntegerField(
        required=False, label="Detection time limit (seconds)", initial=30, min_value=TIMEOUT_S[0], max_value=TIMEOUT_S[1],
        help_text="the longest to decide, and to wait for the beep before leaving the message",
    )
    machine_detection_silence_timeout = forms.IntegerField(
        required=False, label="Silence before giving up (seconds)", initial=5, min_value=SILENCE_MS[0] // 1000,
        max_value=SILENCE_MS[1] // 1000, help_text="nobody speaks this long after answering: the agent gets the call",
    )

    def __init__(self, *args, has_audio: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.has_audio = has_audio
        if not has_audio:
            del self.fields["remove_voicemail_audio"]

    def clean_voicemail_audio(self):
        upload = self.cleaned_data["voicemail_audio"]
        if upload and upload.size > wav_audio.MAX_BYTES:
            raise ValidationError(f"The file is too big: send {wav_audio.ACCEPTED}.")
        return upload

    def clean(self):
        data = super().clean()
        audio = data.get("voicemail_audio") or (self.has_audio and not data.get("remove_voicemail_audio"))
        if (data.get("machine_detection") and data.get("on_machine") == VOICEMAIL
                and not (data.get("voicemail_message", "").strip() or audio)):
            self.add_error("voicemail_message", "Write the message to leave, or upload a recording of it.")
        return data

    def as_fields(self) -> dict:
        """The campaign's fields (campaigns.services): the upload, if any, as a file to convert."""
        data = self.cleaned_data
        initial = {name: field.initial for name, field in self.fields.items()}
        fields = {name: data[name] or initial[name] or "" for name in ("machine_detection", "on_machine",
                                                                        "voicemail_message", "machine_detection_timeout")}
        fields["machine_detection_silence_timeout"] = (data["machine_detection_silence_timeout"]
                                                       or initial["machine_detection_silence_timeout"]) * 1000
        if data.get("voicemail_audio"):
            fields["voicemail_audio"] = data["voicemail_audio"]
        elif data.get("remove_voicemail_audio"):
            fields["voicemail_audio"] = ""
        return fields

    @staticmethod
    def initial_from(values: dict) -> dict:
        """The form's initial values from the campaign's fields (as_fields without the upload)."""
        initial = {k: v for k, v in values.items() if k != "voicemail_audio"}
        if "machine_detection_silence_timeout" in initial:
            initial["machine_detection_silence_timeout"] //= 1000
        return initial


AMD_FIELDS = ("machine_detection", "on_machine", "voicemail_message", "machine_detection_timeout",
              "machine_detection_silence_timeout")
