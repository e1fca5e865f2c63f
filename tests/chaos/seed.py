"""The chaos platform's telephony inventory, written as a platform admin would: the SIPp trunks (the
demo carrier that `manage.py run` enables on every start is switched off).

    python -m tests.chaos.seed '[{"name": "Trunk A", "port": 5071, "max_concurrent": 16, "priority": 10}, …]'

Run with the platform's DATABASE_URL and REDIS_URL in the environment.
"""
import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceplatform.settings")

import django  # noqa: E402

django.setup()

from telephony.models import Carrier  # noqa: E402
from telephony.services import publish_inventory  # noqa: E402
from voiceplatform.demo import DEMO_CARRIER  # noqa: E402


def main(trunks: list[dict]) -> None:
    Carrier.objects.filter(name=DEMO_CARRIER).update(enabled=False)
    for trunk in trunks:
        Carrier.objects.update_or_create(name=trunk["name"], defaults={
            "host": "127.0.0.1", "port": trunk["port"], "priority": trunk["priority"], "max_cps": 100,
            "max_concurrent": trunk["max_concurrent"], "enabled": True})
    publish_inventory()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
