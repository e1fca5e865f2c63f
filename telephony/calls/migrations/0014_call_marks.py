from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('calls', '0013_transfer_dial_action'),
    ]

    operations = [
        migrations.AddField(
            model_name='call',
            name='marks',
            field=models.JSONField(blank=True, default=list),
        ),
    ]
