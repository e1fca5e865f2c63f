"""URL configuration for the metrics tests: the project's URLs plus the line the lead adds to
voiceplatform/urls.py (`path("", include("telephony.metrics.urls"))`). No tests here."""
from django.urls import include, path

from voiceplatform.urls import urlpatterns as project_urlpatterns

urlpatterns = [*project_urlpatterns, path("", include("telephony.metrics.urls"))]
