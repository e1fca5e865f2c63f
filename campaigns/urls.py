"""Campaign and contact endpoints, mounted under /api/v1/."""
from rest_framework.routers import DefaultRouter

from .api import CampaignViewSet, ContactListViewSet, DoNotCallViewSet

router = DefaultRouter(trailing_slash=False)
router.register("contact-lists", ContactListViewSet, basename="contact-list")
router.register("do-not-call", DoNotCallViewSet, basename="do-not-call")
router.register("campaigns", CampaignViewSet, basename="campaign")

urlpatterns = router.urls
