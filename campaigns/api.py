"""REST endpoints under /api/v1/. The schema is already the caller's tenant (set by authentication),
so every queryset here sees only that tenant's rows; another tenant's object is simply a 404.

Views are thin: they check the shape of the input (serializers), call a service or a selector, and
turn service errors into HTTP answers (ValidationError → 400 by field, transitions → 409)."""
from __future__ import annotations

from contextlib import contextmanager

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from telephony.calls.models import Call

from . import imports, selectors, services
from .serializers import (
    CampaignProgressSerializer,
    CampaignSerializer,
    ContactListSerializer,
    ContactSerializer,
    ContactUploadSerializer,
    DoNotCallSerializer,
    ImportReportSerializer,
    VoicemailAudioUploadSerializer,
)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


@contextmanager
def service_errors():
    """Service exceptions as HTTP answers."""
    try:
        yield
    except DjangoValidationError as exc:
        raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}) from None
    except services.TransitionNotAllowed as exc:
        raise Conflict({"detail": str(exc), "state": exc.state}) from None
    except services.CampaignLocked as exc:
        raise Conflict(str(exc)) from None


class ContactListViewSet(viewsets.ModelViewSet):
    serializer_class = ContactListSerializer

    def get_queryset(self):
        return selectors.contact_lists()

    def perform_create(self, serializer):
        with service_errors():
            serializer.instance = services.contact_list_create(**serializer.validated_data)
        serializer.instance.contact_count = 0

    def perform_destroy(self, instance):
        with service_errors():
            services.contact_list_delete(instance)

    @extend_schema(
        request={"multipart/form-data": ContactUploadSerializer},
        responses={201: ImportReportSerializer, 400: OpenApiResponse(description="file too big, not UTF-8, or no phone column: nothing imported")},
    )
    @action(detail=True, methods=["post"], parser_classes=[MultiPartParser, FormParser])
    def upload(self, request, pk=None):
        """Import contacts from a CSV file; bad rows are reported with their line number, good rows kept."""
        contact_list = self.get_object()
        form = ContactUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        upload = form.validated_data["file"]
        try:
            report = services.contact_list_import(
                contact_list, upload, size=upload.size, default_region=form.validated_data.get("default_region")
            )
        except imports.ImportRejected as exc:
            raise ValidationError({"file": [str(exc)]}) from None
        return Response(ImportReportSerializer(report.as_dict()).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ContactSerializer(many=True))
    @action(detail=True, methods=["get"])
    def contacts(self, request, pk=None):
        """The list's contacts, paginated (limit/offset)."""
        contacts = selectors.contacts_of(self.get_object())
        page = self.paginate_queryset(contacts)
        return self.get_paginated_response(ContactSerializer(page, many=True).data)


class DoNotCallViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                       mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The tenant's do-not-call list: numbers no campaign dials. Adding a number already listed
    answers 200 with the existing entry."""

    serializer_class = DoNotCallSerializer

    def get_queryset(self):
        return selectors.do_not_call_entries()

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_errors():
            entry, created = services.do_not_call_add(**serializer.validated_data)
        return Response(
            self.get_serializer(entry).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    def perform_destroy(self, instance):
        services.do_not_call_delete(instance)


class CampaignViewSet(viewsets.ModelViewSet):
    serializer_class = CampaignSerializer

    def get_queryset(self):
        return selectors.campaigns()

    def perform_create(self, serializer):
        with service_errors():
            serializer.instance = services.campaign_create(**serializer.validated_data)

    def perform_update(self, serializer):
        with service_errors():
            serializer.instance = services.campaign_update(serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        with service_errors():
            services.campaign_delete(instance)

    @extend_schema(
        methods=["PUT"], request={"multipart/form-data": VoicemailAudioUploadSerializer},
        responses={200: CampaignSerializer, 400: OpenApiResponse(description="not a WAV this plays, too long or too big")},
    )
    @extend_schema(methods=["DELETE"], request=None, responses={200: CampaignSerializer})
    @action(detail=True, methods=["put", "delete"], url_path="voicemail-audio",
            parser_classes=[MultiPartParser, FormParser])
    def voicemail_audio(self, request, pk=None):
        """The voicemail message as an audio file (played after the beep instead of voicemail_message);
        DELETE goes back to the text."""
        campaign = self.get_object()
        upload = ""
        if request.method == "PUT":
            form = VoicemailAudioUploadSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            upload = form.validated_data["file"]
        with service_errors():
            campaign = services.campaign_update(campaign, voicemail_audio=upload)
        return Response(self.get_serializer(campaign).data)

    def _act(self, request, service):
        campaign = self.get_object()
        with service_errors():
            campaign = service(campaign.pk)
        return Response(self.get_serializer(campaign).data)

    @extend_schema(request=None, responses={200: CampaignSerializer, 409: OpenApiResponse(description="not allowed in this state")})
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """draft/scheduled → running."""
        return self._act(request, services.campaign_start)

    @extend_schema(request=None, responses={200: CampaignSerializer, 409: OpenApiResponse(description="not allowed in this state")})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """running → paused."""
        return self._act(request, services.campaign_pause)

    @extend_schema(request=None, responses={200: CampaignSerializer, 409: OpenApiResponse(description="not allowed in this state")})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """paused → running."""
        return self._act(request, services.campaign_resume)

    @extend_schema(request=None, responses={200: CampaignSerializer, 409: OpenApiResponse(description="not allowed in this state")})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """draft/scheduled/running/paused → cancelled."""
        return self._act(request, services.campaign_cancel)

    @extend_schema(responses=CampaignProgressSerializer)
    @action(detail=True, methods=["get"])
    def progress(self, request, pk=None):
        """Counts of the campaign's contacts by dialing state."""
        return Response(CampaignProgressSerializer(selectors.campaign_progress(self.get_object())).data)


class CallOptOutView(APIView):
    """POST /api/v1/calls/{sid}/opt-out: the agent heard the callee ask not to be called again."""

    @extend_schema(request=None, responses={200: DoNotCallSerializer, 404: OpenApiResponse(description="no such call")})
    def post(self, request, sid: str):
        try:
            entry = services.opt_out_callee(sid)
        except Call.DoesNotExist:
            raise NotFound(f"no call {sid}") from None
        return Response(DoNotCallSerializer(entry).data)
