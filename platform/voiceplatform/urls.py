from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from telephony.calls import twilio_api, twilio_numbers, twilio_recordings

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("", include("telephony.metrics.urls")),
    path("api/v1/", include("campaigns.urls")),
    path("api/v1/", include("telephony.calls.urls")),
    path("2010-04-01/Accounts/<str:account_sid>.json", twilio_api.AccountView.as_view()),
    path("2010-04-01/Accounts/<str:account_sid>/Calls.json", twilio_api.CallsView.as_view()),
    path("2010-04-01/Accounts/<str:account_sid>/Calls/<str:call_sid>.json", twilio_api.CallView.as_view()),
    path("2010-04-01/Accounts/<str:account_sid>/Recordings.json", twilio_recordings.RecordingsView.as_view()),
    path("2010-04-01/Accounts/<str:account_sid>/Calls/<str:call_sid>/Recordings.json",
         twilio_recordings.CallRecordingsView.as_view()),
    re_path(r"^2010-04-01/Accounts/(?P<account_sid>[^/]+)/Recordings/(?P<recording_sid>RE[0-9a-f]+)"
            r"(?:\.(?P<extension>json|wav|mp3))?$", twilio_recordings.RecordingView.as_view()),
    path("2010-04-01/Accounts/<str:account_sid>/IncomingPhoneNumbers.json", twilio_numbers.NumbersView.as_view()),
    path("2010-04-01/Accounts/<str:account_sid>/IncomingPhoneNumbers/<str:number_sid>.json",
         twilio_numbers.NumberView.as_view()),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("", include("voiceplatform.ui.urls")),
]
