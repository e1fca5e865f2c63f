"""Single-call endpoints, mounted under /api/v1/."""
from rest_framework.routers import DefaultRouter

from .api import CallViewSet, RecordingViewSet

router = DefaultRouter(trailing_slash=False)
router.register("calls", CallViewSet, basename="call")
router.register("recordings", RecordingViewSet, basename="recording")

urlpatterns = router.urls
