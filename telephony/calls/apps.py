from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "telephony.calls"
    label = "calls"
    verbose_name = "Calls"
