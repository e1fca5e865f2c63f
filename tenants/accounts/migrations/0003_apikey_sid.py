"""API keys get Twilio's SID (SK…), one of their own each."""
from django.db import migrations, models

import tenants.accounts.models


def give_each_key_a_sid(apps, schema_editor):
    ApiKey = apps.get_model("accounts", "ApiKey")
    for key in ApiKey.objects.all():
        key.sid = tenants.accounts.models.new_key_sid()
        key.save(update_fields=["sid"])


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_apikey_read_only'),
    ]

    operations = [
        migrations.AddField(model_name='apikey', name='sid', field=models.CharField(max_length=34, null=True)),
        migrations.RunPython(give_each_key_a_sid, migrations.RunPython.noop),
        migrations.AlterField(model_name='apikey', name='sid', field=models.CharField(
            default=tenants.accounts.models.new_key_sid, max_length=34, unique=True)),
    ]
