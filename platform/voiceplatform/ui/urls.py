"""Pages of the browser UI; mounted at the root with `path("", include("voiceplatform.ui.urls"))`.

Tenant host: /accounts/login/, /campaigns/…, /settings/… · public host: /accounts/login/, /platform/…
"""
from django.urls import path

from . import views_auth, views_calls, views_campaigns, views_platform, views_settings, views_wizard

app_name = "ui"

urlpatterns = [
    path("accounts/login/", views_auth.SignInView.as_view(), name="login"),
    path("accounts/logout/", views_auth.SignOutView.as_view(), name="logout"),
    # campaigns (tenant host, any user of the tenant)
    path("campaigns/", views_campaigns.campaign_list, name="campaigns"),
    path("campaigns/new/", views_wizard.contacts, name="wizard-contacts"),
    path("campaigns/new/columns/", views_wizard.columns, name="wizard-columns"),
    path("campaigns/new/report/", views_wizard.report, name="wizard-report"),
    path("campaigns/new/calling/", views_wizard.calling, name="wizard-calling"),
    path("campaigns/new/agent/", views_wizard.agent, name="wizard-agent"),
    path("campaigns/<int:pk>/", views_campaigns.campaign_detail, name="campaign"),
    path("campaigns/<int:pk>/progress.json", views_campaigns.campaign_progress, name="campaign-progress"),
    path("campaigns/<int:pk>/export.csv", views_campaigns.campaign_export, name="campaign-export"),
    path("campaigns/<int:pk>/edit/", views_wizard.edit, name="campaign-edit"),
    path("campaigns/<int:pk>/test-call/", views_wizard.test_call, name="wizard-test"),
    path("campaigns/<int:pk>/test-call/<str:sid>.json", views_wizard.test_call_status, name="wizard-test-status"),
    path("campaigns/<int:pk>/review/", views_wizard.review, name="wizard-review"),
    path("campaigns/<int:pk>/<str:action>/", views_campaigns.campaign_action, name="campaign-action"),
    # calls (tenant host, any user; hang-up and resend not for viewers)
    path("calls/", views_calls.call_log, name="calls"),
    path("calls/export.csv", views_calls.call_log_export, name="calls-export"),
    path("calls/<str:sid>/", views_calls.call_detail, name="call"),
    path("calls/<str:sid>/recording.wav", views_calls.call_recording, name="call-recording"),
    path("calls/<str:sid>/hangup/", views_calls.call_hangup, name="call-hangup"),
    path("calls/<str:sid>/webhooks/<int:pk>/resend/", views_calls.delivery_resend, name="delivery-resend"),
    # tenant settings (tenant host, admins)
    path("settings/", views_settings.api_keys, name="settings"),
    path("settings/api-keys/", views_settings.api_keys, name="api-keys"),
    path("settings/api-keys/<int:pk>/revoke/", views_settings.api_key_revoke, name="api-key-revoke"),
    path("settings/webhooks/", views_settings.webhooks, name="webhooks"),
    path("settings/auth-token/rotate/", views_settings.auth_token_rotate, name="auth-token-rotate"),
    path("settings/do-not-call/", views_settings.do_not_call, name="do-not-call"),
    path("settings/do-not-call/<int:pk>/remove/", views_settings.do_not_call_remove, name="do-not-call-remove"),
    path("settings/users/", views_settings.users, name="users"),
    path("settings/users/<int:pk>/role/", views_settings.user_role, name="user-role"),
    path("settings/users/<int:pk>/access/", views_settings.user_access, name="user-access"),
    # platform admin (public host, staff)
    path("platform/", views_platform.index, name="platform"),
    path("platform/carriers/", views_platform.carriers, name="carriers"),
    path("platform/carriers/new/", views_platform.carrier_edit, name="carrier-new"),
    path("platform/carriers/<int:pk>/", views_platform.carrier_edit, name="carrier"),
    path("platform/carriers/<int:pk>/test/", views_platform.carrier_test, name="carrier-test"),
    path("platform/carriers/<int:pk>/delete/", views_platform.carrier_delete, name="carrier-delete"),
    path("platform/numbers/", views_platform.numbers, name="numbers"),
    path("platform/numbers/new/", views_platform.number_edit, name="number-new"),
    path("platform/numbers/<int:pk>/", views_platform.number_edit, name="number"),
    path("platform/tenants/", views_platform.tenants, name="tenants"),
    path("platform/tenants/<int:pk>/", views_platform.tenant_edit, name="tenant"),
    path("platform/gateways/", views_platform.gateways, name="gateways"),
    path("platform/calls/", views_calls.platform_call_log, name="platform-calls"),
    path("platform/calls/<str:schema>/<str:sid>/", views_calls.platform_call_detail, name="platform-call"),
]
