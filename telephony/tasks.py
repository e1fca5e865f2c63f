from voiceplatform.celery import app

from . import services
from .models import Carrier


@app.task(ignore_result=True)
def check_carriers() -> None:
    for carrier_id in Carrier.objects.filter(enabled=True).values_list("pk", flat=True):
        check_carrier.delay(carrier_id)


@app.task(ignore_result=True)
def check_carrier(carrier_id: int) -> None:
    services.check_carrier(carrier_id)


@app.task(ignore_result=True)
def publish_inventory() -> None:
    services.publish_inventory()
