from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0011_chat')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='Referral',
            name='consultation',
            field=fields.ForeignKeyField('models.Consultation', source_field='consultation_id', null=True, db_index=True, db_constraint=True, to_field='id', related_name='referrals', on_delete=OnDelete.SET_NULL),
        ),
    ]
