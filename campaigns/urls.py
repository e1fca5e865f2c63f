"""Campaign and contact endpoints, mounted under /api/v1/."""
from rest_framework.routers import DefaultRouter

from .api import ContactListViewSet

router = DefaultRouter(trailing_slash=False)
router.register("contact-lists", ContactListViewSet, basename="contact-list")

urlpatterns = router.urls
