"""Campaign and contact endpoints, mounted under /api/v1/."""
from django.urls import path
from rest_framework.routers import DefaultRouter

from .api import CallOptOutView, CampaignViewSet, ContactListViewSet, DoNotCallViewSet

router = DefaultRouter(trailing_slash=False)
router.register("contact-lists", ContactListViewSet, basename="contact-list")
router.register("do-not-call", DoNotCallViewSet, basename="do-not-call")
router.register("campaigns", CampaignViewSet, basename="campaign")

urlpatterns = [*router.urls, path("calls/<str:sid>/opt-out", CallOptOutView.as_view(), name="call-opt-out")]
