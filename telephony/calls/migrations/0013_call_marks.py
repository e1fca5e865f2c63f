from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('calls', '0012_call_twiml_url'),
    ]

    operations = [
        migrations.AddField(
            model_name='call',
            name='marks',
            field=models.JSONField(blank=True, default=list),
        ),
    ]
