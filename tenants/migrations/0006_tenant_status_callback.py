from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0005_tenant_recording_retention'),
    ]

    operations = [
        migrations.AddField(
            model_name='tenant',
            name='status_callback',
            field=models.URLField(blank=True, max_length=500),
        ),
    ]
