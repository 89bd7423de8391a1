from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_delivery_and_slips')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Referral',
            name='chain_head',
            field=fields.CharField(default='', max_length=80),
        ),
    ]
