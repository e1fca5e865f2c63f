"""/api/v1/calls: place a call, follow it, hang it up, list and export records; /api/v1/recordings."""
import redis
from django.db import connection
from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from core.api import ReusedSerializer
from core.spreadsheet import CsvLines

from . import recordings, selectors, services, transfers
from .serializers import (
    CallCreateSerializer,
    CallDetailSerializer,
    CallDigitsSerializer,
    CallSerializer,
    CallTransferCreateSerializer,
    RecordingSerializer,
    TransferSerializer,
)

EXPORT_COLUMNS = ["sid", "direction", "from_number", "to_number", "status", "outcome", "reason", "sip_code",
                  "hangup_by", "created_at", "answered_at", "ended_at", "setup_ms", "duration_s", "answered_by",
                  "amd_ms"]

# The create's input and output, its most frequent request (bursts of API calls): serializers built once.
CREATE_INPUT = ReusedSerializer(CallCreateSerializer)
CREATED_CALL = ReusedSerializer(CallSerializer)


def _mid_call(run):
    """(what ``run`` returned, None), or (None, the response) for a mid-call request the gateways could not
    take: 409 when the call is not in progress, 503 when they cannot be reached; a request that cannot be
    placed is a 400 naming the field."""
    try:
        return run(), None
    except services.CallRequestError as error:
        raise ValidationError({error.field: [str(error)]}) from None
    except services.CallNotInProgress as error:
        return None, Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
    except redis.RedisError:
        return None, Response({"detail": "the gateways cannot be reached; try again shortly"},
                              status=status.HTTP_503_SERVICE_UNAVAILABLE)


class CallViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    lookup_field = "sid"
    serializer_class = CallSerializer

    def get_queryset(self):
        campaign = self.request.query_params.get("campaign", "")
        if campaign and not campaign.isdigit():
            raise ValidationError({"campaign": ["a campaign's id (a whole number)"]})
        calls = selectors.calls(self.request.query_params)
        return calls if self.action == "retrieve" else calls.defer("marks")  # up to 200 marks a call

    def get_serializer_class(self):
        return CallDetailSerializer if self.action == "retrieve" else CallSerializer

    def create(self, request):
        fields = CREATE_INPUT.validated(request.data)
        try:
            call = services.place_call(
                connection.tenant,
                services.CallRequest(
                    to=fields["to"], from_=fields["from"], stream_url=fields.get("stream_url", ""),
                    agent_connects=fields["agent_connects"], fallback_message=fields["fallback_message"],
                    stream_encoding=fields["stream_encoding"],
                    status_callback=fields.get("status_callback", ""), ring_timeout=fields["timeout"],
                    max_duration=fields["max_duration"], custom_parameters=fields["custom_parameters"],
                    machine_detection=fields["machine_detection"], voicemail_message=fields["voicemail_message"],
                    amd_status_callback=fields["async_amd_status_callback"], send_digits=fields["send_digits"],
                    record=fields["record"], recording_status_callback=fields["recording_status_callback"],
                    recording_announcement=fields["recording_announcement"],
                ),
            )
        except services.CallRequestError as error:
            raise ValidationError({error.field: [str(error)]}) from None
        except redis.RedisError:
            # the record ends as not_placed (services.give_up_unplaced_calls): the caller may try again
            return Response({"detail": "the call could not be handed to the gateways; try again shortly"},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE)
        call._prefetched_objects_cache = {"legs": [], "transfers": []}  # just placed: none yet, no query for them
        return Response(CREATED_CALL.represented(call, {"request": request}), status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def hangup(self, request, sid=None):
        call = self.get_object()
        return Response({"sid": call.sid, "hangup": services.hang_up(call)}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=CallDigitsSerializer)
    @action(detail=True, methods=["post"])
    def digits(self, request, sid=None):
        """Press keys on the callee's phone (RFC 4733), after any still being sent."""
        call = self.get_object()
        data = CallDigitsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        _, refused = _mid_call(lambda: services.send_digits(call, data.validated_data["digits"]))
        if refused is not None:
            return refused
        return Response({"sid": call.sid, "digits": data.validated_data["digits"]}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=CallTransferCreateSerializer, responses={201: TransferSerializer})
    @action(detail=True, methods=["post"])
    def transfer(self, request, sid=None):
        """Hand the answered call to a person: the platform dials them and joins them to the call."""
        call = self.get_object()
        data = CallTransferCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        transfer, refused = _mid_call(lambda: transfers.start_transfer(call, transfers.TransferRequest(**data.validated_data)))
        if refused is not None:
            return refused
        return Response(TransferSerializer(transfer).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    @action(detail=False, methods=["get"], url_path="export")
    def export(self, request):
        """All matching records as CSV (streamed, so large exports do not load into memory)."""
        csv = CsvLines()
        rows = self.get_queryset().values_list(*EXPORT_COLUMNS).iterator(chunk_size=2000)
        lines = (csv.line(row) for row in rows)
        response = StreamingHttpResponse(
            (line for part in ([csv.line(EXPORT_COLUMNS)], lines) for line in part), content_type="text/csv"
        )
        response["Content-Disposition"] = 'attachment; filename="calls.csv"'
        return response


class RecordingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                       viewsets.GenericViewSet):
    """/api/v1/recordings: recorded calls (list, fetch, the WAV, delete)."""

    lookup_field = "sid"
    serializer_class = RecordingSerializer

    def get_queryset(self):
        return selectors.recordings(self.request.query_params)

    def perform_destroy(self, instance):
        recordings.delete_recording(instance)

    @extend_schema(responses={(200, "audio/wav"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def media(self, request, sid=None):
        recording = self.get_object()
        return FileResponse(recording.file.open("rb"), content_type="audio/wav", as_attachment=True,
                            filename=f"{recording.sid}.wav")
