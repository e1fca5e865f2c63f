from django.conf import settings
from django.db import connection
from rest_framework import serializers

from media.protocol import MEDIA_FORMATS

from . import amd, outbound, recording_callbacks, services, stream_access
from .models import Call, CallLeg, Recording, Transfer


def ws_url(value: str) -> str:
    if why := outbound.refusal(value, outbound.STREAM_SCHEMES):
        raise serializers.ValidationError(why)
    return value


def http_url(value: str) -> str:
    if why := outbound.refusal(value, outbound.CALLBACK_SCHEMES):
        raise serializers.ValidationError(why)
    return value


DIGITS_REGEX = services.DIGITS_REGEX


class CallDigitsSerializer(serializers.Serializer):
    digits = serializers.RegexField(DIGITS_REGEX, help_text="0-9 * # A-D, w: pause half a second (at most 32)")


class CallCreateSerializer(serializers.Serializer):
    to = serializers.CharField(max_length=32)
    from_ = serializers.CharField(max_length=32)
    stream_url = serializers.CharField(max_length=500, required=False, allow_blank=True, validators=[ws_url])
    status_callback = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                            validators=[http_url])
    agent_connects = serializers.BooleanField(
        default=False, help_text="the agent connects in to stream_connect_url (in the response and status "
                                 "callbacks) instead of us connecting to stream_url")
    stream_encoding = serializers.ChoiceField(
        choices=sorted(MEDIA_FORMATS), default="audio/x-mulaw",
        help_text="audio on the stream: 8 kHz mu-law (as Twilio) or 16 kHz 16-bit linear")
    fallback_message = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default="",
        help_text="spoken to the callee (espeak-ng) if the agent cannot be reached or drops, before hanging up")
    send_digits = serializers.RegexField(
        DIGITS_REGEX, required=False, default="",
        help_text="keys pressed on the callee's phone once it answers (RFC 4733; w: pause half a second)")
    record = serializers.BooleanField(default=False, help_text="record the call: a dual-channel WAV (callee left, agent right)")
    recording_announcement = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default="",
        help_text="spoken to the callee (espeak-ng) once it answers; the recording and the agent start after it")
    recording_status_callback = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default="", validators=[http_url],
        help_text="called (Twilio's RecordingStatusCallback parameters) when the recording is stored or absent")
    recording_status_callback_method = serializers.ChoiceField(choices=["GET", "POST"], default="POST")
    recording_status_callback_event = serializers.ListField(
        child=serializers.ChoiceField(choices=list(recording_callbacks.EVENTS)), required=False, default=list,
        help_text="completed (the default) and/or absent")
    timeout = serializers.IntegerField(min_value=5, max_value=600, default=30)
    max_duration = serializers.IntegerField(min_value=1, max_value=4 * 3600, default=3600)
    custom_parameters = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False,
                                              default=dict)
    # answering-machine detection, with Twilio's parameters and defaults (docs: README, "Answering machines")
    machine_detection = serializers.ChoiceField(
        choices=amd.MODES, required=False, help_text="Enable (decide human/machine) or DetectMessageEnd (also "
                                                     "wait for the end of a machine's greeting)")
    machine_detection_timeout = serializers.IntegerField(min_value=3, max_value=59, required=False)
    machine_detection_speech_threshold = serializers.IntegerField(min_value=1000, max_value=6000, required=False)
    machine_detection_speech_end_threshold = serializers.IntegerField(min_value=500, max_value=5000, required=False)
    machine_detection_silence_timeout = serializers.IntegerField(min_value=2000, max_value=10000, required=False)
    async_amd = serializers.BooleanField(
        default=False, help_text="stream at once and send the result later (callback, answeredBy message)")
    async_amd_status_callback = serializers.CharField(max_length=500, required=False, allow_blank=True,
                                                      default="", validators=[http_url])
    on_machine = serializers.ChoiceField(
        choices=amd.ON_MACHINE, default=amd.CONNECT,
        help_text="on a machine or fax: connect the agent anyway, hang up, or leave voicemail_message")
    voicemail_message = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="",
                                              help_text="spoken (espeak-ng) after the machine's beep")

    def validate(self, attrs):
        mode = attrs.pop("machine_detection", None)
        tuning = {name: attrs.pop(f"machine_detection_{suffix}", None) for name, suffix in (
            ("timeout_s", "timeout"), ("speech_threshold_ms", "speech_threshold"),
            ("speech_end_threshold_ms", "speech_end_threshold"), ("silence_timeout_ms", "silence_timeout"))}
        attrs["machine_detection"] = None
        if mode:
            try:
                attrs["machine_detection"] = amd.config(mode, async_amd=attrs["async_amd"],
                                                        on_machine=attrs["on_machine"], **tuning)
            except amd.AmdSettingsError as error:
                raise serializers.ValidationError({error.field: [str(error)]}) from None
        elif any(v is not None for v in tuning.values()) or attrs["on_machine"] != amd.CONNECT:
            raise serializers.ValidationError({"machine_detection": ["set machine_detection to use these settings"]})
        attrs["recording_status_callback"] = recording_callbacks.configured(
            attrs["recording_status_callback"], attrs.pop("recording_status_callback_method"),
            attrs.pop("recording_status_callback_event"))
        if attrs["recording_status_callback"] and not attrs["record"]:
            raise serializers.ValidationError({"recording_status_callback": ["only recorded calls (record) have one"]})
        return attrs

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")  # `from` is a keyword in Python, not in JSON
        return fields


class RecordingSerializer(serializers.ModelSerializer):
    call_sid = serializers.CharField(source="call.sid")
    media_url = serializers.SerializerMethodField(help_text="the WAV (GET, with the API key)")

    def get_media_url(self, recording: Recording) -> str:
        return f"/api/v1/recordings/{recording.sid}/media"

    class Meta:
        model = Recording
        fields = ["sid", "call_sid", "duration_s", "channels", "created_at", "media_url"]
        read_only_fields = fields


class CallLegSerializer(serializers.ModelSerializer):
    carrier = serializers.CharField(source="carrier_name")

    class Meta:
        model = CallLeg
        fields = ["attempt", "carrier", "uri", "sip_code", "reason", "failed_over", "started_at", "ringing_at",
                  "answered_at", "ended_at"]


class CallTransferCreateSerializer(serializers.Serializer):
    to = serializers.CharField(max_length=500, required=False, allow_blank=True, default="",
                               help_text="E.164 number (through the carriers) or SIP URI; empty: the call's "
                                         "first transfer number (its campaign's)")
    mode = serializers.ChoiceField(choices=Transfer.Mode.choices, default=Transfer.Mode.COLD,
                                   help_text="cold: the agent's stream ends when the person answers; warm: the "
                                             "agent stays, hearing both, until it closes its stream")
    on_fail = serializers.ChoiceField(choices=Transfer.OnFail.choices, default=Transfer.OnFail.AGENT,
                                      help_text="busy, no answer or failure: back to the agent, play "
                                                "failed_message then hang up, or hang up")
    failed_message = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    whisper = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="",
                                    help_text="spoken (espeak-ng) to the person when they answer, before they are "
                                              "connected (cold, warm)")
    timeout = serializers.IntegerField(min_value=5, max_value=600, default=30, help_text="seconds the person's phone rings")
    caller_id = serializers.CharField(max_length=32, required=False, allow_blank=True, default="",
                                      help_text="one of the tenant's numbers; default: the call's")


class TransferSerializer(serializers.ModelSerializer):
    call_sid = serializers.CharField(source="call.sid", read_only=True)
    carrier = serializers.CharField(source="carrier_name", read_only=True)

    class Meta:
        model = Transfer
        fields = ["sid", "call_sid", "to", "caller_id", "mode", "on_fail", "status", "outcome", "reason", "sip_code",
                  "hangup_by", "carrier", "created_at", "answered_at", "ended_at", "duration_s"]
        read_only_fields = fields


class CallSerializer(serializers.ModelSerializer):
    carrier = serializers.CharField(source="carrier_name")
    legs = CallLegSerializer(many=True, read_only=True)
    transfers = TransferSerializer(many=True, read_only=True, help_text="the people the call was handed to")
    stream_connect_url = serializers.SerializerMethodField(
        help_text="agent_connects calls not yet ended: where the agent connects in (the token in it expires)")

    def get_stream_connect_url(self, call: Call) -> str | None:
        if not call.agent_connects or call.status in Call.FINAL_STATUSES:
            return None
        request = self.context.get("request")
        base = request.build_absolute_uri("/") if request is not None else settings.PUBLIC_BASE_URL
        return stream_access.agent_connect_url(base, connection.schema_name, call.sid)

    class Meta:
        model = Call
        fields = ["sid", "direction", "from_number", "to_number", "status", "outcome", "reason", "sip_code",
                  "hangup_by", "carrier", "stream_url", "agent_connects", "stream_connect_url", "custom_parameters", "status_callback", "ring_timeout",
                  "created_at", "started_at", "ringing_at", "answered_at", "ended_at", "post_dial_delay_ms",
                  "setup_ms", "duration_s", "ai_connect_ms", "abandoned", "jitter_ms", "loss_percent", "rtt_ms",
                  "mos", "bridge_in_p50_ms", "bridge_in_p99_ms", "bridge_out_p50_ms", "bridge_out_p99_ms",
                  "ai_response_ms", "ai_response_turns", "frames_to_agent", "frames_dropped", "machine_detection",
                  "answered_by", "amd_ms", "amd_evidence", "record", "transfer_numbers", "legs", "transfers"]
        read_only_fields = fields


class CallMarkSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="the mark's name, as the agent sent it (first 64 characters)")
    sent_at = serializers.FloatField(help_text="when the agent's mark arrived (Unix time, seconds)")
    played_at = serializers.FloatField(allow_null=True, help_text="when its audio had played and it was echoed; "
                                                                  "null: the call ended first")
    cleared = serializers.BooleanField(default=False, help_text="echoed by a `clear`: its audio was dropped")


class CallDetailSerializer(CallSerializer):
    """One call: its record, with the agent stream's marks (the first 200)."""

    marks = CallMarkSerializer(many=True, read_only=True)

    class Meta(CallSerializer.Meta):
        fields = [*CallSerializer.Meta.fields, "marks"]
        read_only_fields = fields
