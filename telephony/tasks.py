from celery import shared_task

from . import services
from .models import Carrier


@shared_task(ignore_result=True)
def check_carriers() -> None:
    for carrier_id in Carrier.objects.filter(enabled=True).values_list("pk", flat=True):
        check_carrier.delay(carrier_id)


@shared_task(ignore_result=True)
def check_carrier(carrier_id: int) -> None:
    services.check_carrier(carrier_id)


@shared_task(ignore_result=True)
def publish_inventory() -> None:
    services.publish_inventory()
