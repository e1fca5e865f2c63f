from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("calls", "0004_call_dtmf_digits"),
    ]

    operations = [
        migrations.AddField(
            model_name="call",
            name="agent_connects",
            field=models.BooleanField(default=False),
        ),
    ]
