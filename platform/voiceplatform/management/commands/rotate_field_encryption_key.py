"""Re-encrypt every carrier password and tenant auth token under a new field-encryption key."""
from __future__ import annotations

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from telephony import secrets
from telephony.models import Carrier
from tenants.models import Tenant
from voiceplatform import secret_keys
from voiceplatform.embedded import var_dir


class Command(BaseCommand):
    help = ("Re-encrypt carrier passwords under a new FIELD_ENCRYPTION_KEY. With the key in the environment, "
            "set FIELD_ENCRYPTION_KEY=new,old on every process first; this re-encrypts under `new`, then "
            "drop `old`. With the generated key (var directory), this makes the new key itself. Restart "
            "the platform's processes afterwards.")

    def add_arguments(self, parser):
        parser.add_argument("--old-key", action="append", default=[],
                            help="a key that is no longer configured but made some passwords (an upgrade from "
                                 "a version whose default key was SECRET_KEY); only used to decrypt")

    def handle(self, *args, old_key, **options):
        from_environment = bool(os.environ.get("FIELD_ENCRYPTION_KEY", "").strip())
        keys = list(settings.FIELD_ENCRYPTION_KEY)
        if not from_environment:
            stored = secret_keys.read_file(var_dir())
            keys = [secret_keys.new_key(), *stored["FIELD_ENCRYPTION_KEY"]]
            # Both keys on disk before any password changes: a crash in between loses nothing.
            secret_keys.write_file(var_dir(), {**stored, "FIELD_ENCRYPTION_KEY": keys})
        elif len(keys) + len(old_key) < 2:
            raise CommandError("FIELD_ENCRYPTION_KEY holds one key: set it to 'new,old' to rotate")
        keys += old_key
        count = 0
        with transaction.atomic():
            for carrier in Carrier.objects.select_for_update().exclude(password_encrypted=""):
                try:
                    carrier.password_encrypted = secrets.rotate(carrier.password_encrypted, keys)
                except secrets.DecryptionError:
                    raise CommandError(f"carrier {carrier.name}: its password was made with none of the "
                                       "keys given; nothing was changed") from None
                carrier.save(update_fields=["password_encrypted"])
                count += 1
            for tenant in Tenant.objects.select_for_update():
                for field in ("auth_token_encrypted", "previous_auth_token_encrypted"):
                    if getattr(tenant, field):
                        try:
                            setattr(tenant, field, secrets.rotate(getattr(tenant, field), keys))
                        except secrets.DecryptionError:
                            raise CommandError(f"tenant {tenant.schema_name}: its auth token was made with none "
                                               "of the keys given; nothing was changed") from None
                tenant.save(update_fields=["auth_token_encrypted", "previous_auth_token_encrypted"])
        if not from_environment:
            secret_keys.write_file(var_dir(), {**stored, "FIELD_ENCRYPTION_KEY": keys[:1]})
        self.stdout.write(f"re-encrypted {count} carrier password(s) under the new key; "
                          + ("restart the platform's processes" if not from_environment
                             else "remove the old key from FIELD_ENCRYPTION_KEY and restart"))
