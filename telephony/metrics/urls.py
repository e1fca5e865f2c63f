"""HTTP routes of the metrics: include at the root, `path("", include("telephony.metrics.urls"))`."""
from django.urls import path

from . import prometheus, views

urlpatterns = [
    path("dashboard/", views.tenant_dashboard, name="tenant-dashboard"),
    path("platform/dashboard/", views.platform_dashboard, name="platform-dashboard"),
    path("metrics", prometheus.metrics_view, name="metrics"),
]
