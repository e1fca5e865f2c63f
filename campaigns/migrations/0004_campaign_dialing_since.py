from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0003_campaign_status_callback'),
    ]

    operations = [
        migrations.AddField(
            model_name='campaign',
            name='dialing_since',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
