import signal

from django.core.management.base import BaseCommand

from core.redis_client import get_redis
from telephony.calls.event_stream import consume


class Command(BaseCommand):
    help = "Write gateway call events into the tenants' call records (run one or more)."

    def handle(self, *args, **options):
        stopping = []
        signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
        signal.signal(signal.SIGINT, lambda *a: stopping.append(1))
        consume(get_redis(), stop=lambda: bool(stopping))
