from tortoise import migrations
from tortoise.migrations import operations as ops
from models.accounts import BindingState, Relation
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_policy_what_to_bring')]

    initial = False

    operations = [
        ops.CreateModel(
            name='BindingRequest',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.UUIDField(default=uuid4, unique=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('account', fields.ForeignKeyField('models.WeChatAccount', source_field='account_id', db_constraint=True, to_field='id', related_name='binding_requests', on_delete=OnDelete.CASCADE)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='binding_requests', on_delete=OnDelete.CASCADE)),
                ('relation', fields.CharEnumField(description='SELF: self\nPARENT: parent\nCHILD: child\nSPOUSE: spouse\nOTHER: other', enum_type=Relation, max_length=8)),
                ('state', fields.CharEnumField(default=BindingState.PENDING, description='PENDING: pending\nCONFIRMED: confirmed', enum_type=BindingState, max_length=12)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('confirmed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('confirmed_by_staff', fields.ForeignKeyField('models.Staff', source_field='confirmed_by_staff_id', null=True, db_constraint=True, to_field='id', related_name='bindings_confirmed', on_delete=OnDelete.SET_NULL)),
                ('confirmed_by_account', fields.ForeignKeyField('models.WeChatAccount', source_field='confirmed_by_account_id', null=True, db_constraint=True, to_field='id', related_name='bindings_approved', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'binding_request', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A patient binding that still needs proof: confirmed in person by a staff member of an institution that'},
            bases=['Record'],
        ),
    ]
