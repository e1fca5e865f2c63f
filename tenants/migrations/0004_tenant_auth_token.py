"""The webhook secret becomes the account auth token, encrypted: existing receivers keep validating
with the value they have, and it now also works for basic auth."""
from django.conf import settings
from django.db import migrations, models

import tenants.models


def encrypt_webhook_secrets(apps, schema_editor):
    from telephony import secrets

    Tenant = apps.get_model("tenants", "Tenant")
    for tenant in Tenant.objects.all():
        tenant.auth_token_encrypted = secrets.encrypt(tenant.webhook_secret, settings.FIELD_ENCRYPTION_KEY)
        tenant.save(update_fields=["auth_token_encrypted"])


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0003_tenant_max_concurrent_calls'),
    ]

    operations = [
        migrations.AddField(model_name='tenant', name='auth_token_encrypted', field=models.TextField(default='')),
        migrations.RunPython(encrypt_webhook_secrets, migrations.RunPython.noop),
        migrations.AlterField(model_name='tenant', name='auth_token_encrypted',
                              field=models.TextField(default=tenants.models.new_auth_token_encrypted)),
        migrations.RemoveField(model_name='tenant', name='webhook_secret'),
        migrations.AddField(model_name='tenant', name='previous_auth_token_encrypted',
                            field=models.TextField(blank=True, default='')),
        migrations.AddField(model_name='tenant', name='previous_auth_token_until',
                            field=models.DateTimeField(blank=True, null=True)),
    ]
