"""The Twilio-compatible views as the OpenAPI schema shows them (twilio_api reads its input itself,
field by field, as Twilio's own API does; these serializers only describe it)."""
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class TwilioCallCreateSerializer(serializers.Serializer):
    To = serializers.CharField(help_text="the number to call (E.164)")
    From = serializers.CharField(help_text="one of the tenant's numbers (E.164)")
    Twiml = serializers.CharField(required=False, help_text="<Response> with <Connect><Stream>, <Pause>, <Hangup>")
    Url = serializers.CharField(required=False, help_text="where to fetch the TwiML (instead of Twiml)")
    Method = serializers.ChoiceField(choices=["GET", "POST"], required=False, default="POST")
    StatusCallback = serializers.CharField(required=False, max_length=500)
    StatusCallbackEvent = serializers.ListField(
        child=serializers.ChoiceField(choices=["initiated", "ringing", "answered", "completed"]), required=False,
        help_text="the events to call back at (repeat the parameter, or separate with spaces); default completed")
    StatusCallbackMethod = serializers.CharField(required=False, default="POST", help_text="GET or POST")
    Timeout = serializers.IntegerField(required=False, default=60, help_text="ring seconds, clamped to 5-600")
    TimeLimit = serializers.IntegerField(required=False, default=14400, min_value=1, max_value=14400)


class TwilioCallUpdateSerializer(serializers.Serializer):
    Status = serializers.ChoiceField(choices=["completed", "canceled"])


class TwilioCallSerializer(serializers.Serializer):
    sid = serializers.CharField()
    account_sid = serializers.CharField()
    api_version = serializers.CharField()
    to = serializers.CharField()
    to_formatted = serializers.CharField()
    from_ = serializers.CharField()
    from_formatted = serializers.CharField()
    status = serializers.CharField()
    direction = serializers.CharField()
    date_created = serializers.CharField(allow_null=True)
    date_updated = serializers.CharField(allow_null=True)
    start_time = serializers.CharField(allow_null=True)
    end_time = serializers.CharField(allow_null=True)
    duration = serializers.CharField(allow_null=True)
    answered_by = serializers.CharField(allow_null=True)
    price = serializers.CharField(allow_null=True)
    price_unit = serializers.CharField()
    parent_call_sid = serializers.CharField(allow_null=True)
    caller_name = serializers.CharField(allow_null=True)
    forwarded_from = serializers.CharField(allow_null=True)
    group_sid = serializers.CharField(allow_null=True)
    queue_time = serializers.CharField()
    trunk_sid = serializers.CharField(allow_null=True)
    phone_number_sid = serializers.CharField(allow_null=True)
    uri = serializers.CharField()
    subresource_uris = serializers.DictField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class TwilioErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField()
    message = serializers.CharField()
    more_info = serializers.CharField()
    status = serializers.IntegerField()


TWILIO_ERROR = OpenApiResponse(TwilioErrorSerializer, description="a fault in the request, as Twilio reports it")
