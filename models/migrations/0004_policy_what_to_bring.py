from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_referral_chain_head')]

    initial = False

    operations = [
        ops.AddField(
            model_name='InstitutionPolicy',
            name='what_to_bring',
            field=fields.CharField(default='', max_length=200),
        ),
    ]
