from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0004_campaign_answering_machine_detection'),
    ]

    operations = [
        migrations.AddField(
            model_name='campaign',
            name='dialing_since',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
