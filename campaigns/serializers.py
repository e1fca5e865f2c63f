"""Shapes of the REST API: input checked for types here, business rules in services."""
from rest_framework import serializers

from .models import Campaign, Contact, ContactList, DoNotCall


class ContactListSerializer(serializers.ModelSerializer):
    contact_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = ContactList
        fields = ["id", "name", "default_region", "created_at", "contact_count"]

    def validate_default_region(self, value: str) -> str:
        return value.upper()


class ContactUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="CSV, UTF-8: a header row with a phone column; name, time zone optional")
    default_region = serializers.CharField(
        required=False, allow_blank=True, max_length=2,
        help_text="country for numbers without '+' (default: the list's default_region)",
    )

    def validate_default_region(self, value: str) -> str:
        import phonenumbers

        if value and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise serializers.ValidationError(f"unknown region {value!r}: use a two-letter country code such as 'US'")
        return value.upper()


class VoicemailAudioUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="the voicemail message: a PCM WAV file (8 or 16-bit, mono or stereo, any rate)")


class ImportErrorSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    reason = serializers.CharField()
    value = serializers.CharField()


class ImportReportSerializer(serializers.Serializer):
    imported = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    duplicate_rows = ImportErrorSerializer(many=True, help_text="the skipped duplicate lines (at most 1000), each with "
                                                                "why: the line it repeats, or already in the list")
    duplicates_not_shown = serializers.IntegerField()
    warnings = serializers.ListField(child=serializers.CharField(), help_text="about columns (the rows were imported)")
    do_not_call = serializers.IntegerField()
    errors = ImportErrorSerializer(many=True, help_text="at most 1000; errors_not_shown counts the rest")
    error_count = serializers.IntegerField()
    errors_not_shown = serializers.IntegerField()
    total_rows = serializers.IntegerField()


class ContactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Contact
        fields = ["id", "contact_list", "phone", "name", "time_zone", "variables"]


class DoNotCallSerializer(serializers.ModelSerializer):
    class Meta:
        model = DoNotCall
        fields = ["id", "phone", "reason", "created_at"]
        extra_kwargs = {"phone": {"validators": []}}  # adding a number twice is fine (idempotent)


class CampaignSerializer(serializers.ModelSerializer):
    caller_ids = serializers.ListField(child=serializers.CharField(max_length=32), allow_empty=True)
    weekdays = serializers.ListField(child=serializers.IntegerField(), allow_empty=True, required=False)
    custom_parameters = serializers.DictField(required=False)
    voicemail_audio = serializers.CharField(source="voicemail_audio.name", read_only=True, allow_null=True,
                                            help_text="the stored voicemail audio (PUT /campaigns/{id}/voicemail-audio)")

    class Meta:
        model = Campaign
        fields = [
            "id", "name", "contact_list", "state", "start_at", "caller_ids", "stream_url", "custom_parameters",
            "status_callback", "cps", "max_concurrent", "window_start", "window_end", "weekdays", "default_time_zone",
            "retry_busy_max_attempts", "retry_busy_delay_s", "retry_no_answer_max_attempts",
            "retry_no_answer_delay_s", "retry_failed_max_attempts", "retry_failed_delay_s",
            "ring_timeout", "fallback_message", "optout_digit", "machine_detection", "on_machine",
            "voicemail_message", "voicemail_audio", "machine_detection_timeout", "machine_detection_silence_timeout",
            "retry_machine_max_attempts", "retry_machine_delay_s", "record_calls", "recording_announcement",
            "transfer_numbers", "created_at",
            "started_at",
            "finished_at",
        ]
        # voicemail_audio: the stored file's name; uploaded with PUT /campaigns/{id}/voicemail-audio
        read_only_fields = ["state", "voicemail_audio", "created_at", "started_at", "finished_at"]
        # Range rules live in Campaign.clean() (one message per field, whatever the client).
        extra_kwargs = {
            "cps": {"validators": []},
            "max_concurrent": {"validators": [], "min_value": None},
            "ring_timeout": {"validators": [], "min_value": None},
            "default_time_zone": {"validators": []},
            "machine_detection_timeout": {"validators": [], "min_value": None, "max_value": None},
            "machine_detection_silence_timeout": {"validators": [], "min_value": None, "max_value": None},
        }


class CampaignProgressSerializer(serializers.Serializer):
    campaign = serializers.IntegerField()
    state = serializers.CharField()
    total = serializers.IntegerField()
    pending = serializers.IntegerField()
    dialing = serializers.IntegerField(help_text="contacts whose call is in flight (claimed by the dialer)")
    done = serializers.IntegerField()
    failed = serializers.IntegerField()
    dnc = serializers.IntegerField()
    answered = serializers.IntegerField()
    dialed = serializers.IntegerField(help_text="contacts called at least once, or being called")
    remaining = serializers.IntegerField(help_text="pending + dialing")
    in_call = serializers.IntegerField(help_text="the campaign's calls that have not ended yet")
    dialable_now = serializers.IntegerField(help_text="pending contacts that can be dialed now")
    waiting_for_window = serializers.IntegerField(help_text="pending contacts whose calling window is closed now")
    waiting_for_retry = serializers.IntegerField(help_text="pending contacts whose next attempt is not due yet")
    next_window_at = serializers.DateTimeField(
        allow_null=True, help_text="when the first closed calling window of a pending contact opens")
    next_retry_at = serializers.DateTimeField(allow_null=True, help_text="when the first retry is due")
    dial_rate = serializers.FloatField(
        help_text="calls per second the campaign places (over its last 20 calls since it started or resumed, once "
                  "it has made 5; before that, its CPS)")
    eta_seconds = serializers.IntegerField(
        allow_null=True, help_text="time to dial the contacts that can be dialed now at dial_rate; 0 when nothing "
                                   "remains; null when not running or nothing can be dialed before a window opens "
                                   "or a retry is due")
    abandonment_rate = serializers.FloatField(allow_null=True, help_text="abandoned / answered calls")
