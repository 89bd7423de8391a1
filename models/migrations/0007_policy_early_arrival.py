from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_binding_requests')]

    initial = False

    operations = [
        ops.AddField(
            model_name='InstitutionPolicy',
            name='early_arrival_days',
            field=fields.IntField(default=0),
        ),
    ]
