from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Delivery',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('dedupe_key', fields.CharField(unique=True, max_length=160)),
                ('account', fields.ForeignKeyField('models.WeChatAccount', source_field='account_id', null=True, db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.SET_NULL)),
                ('channel', fields.CharField(max_length=16)),
                ('template_id', fields.CharField(default='', max_length=64)),
                ('state', fields.CharField(max_length=16)),
                ('errcode', fields.IntField(null=True)),
                ('msgid', fields.CharField(default='', db_index=True, max_length=64)),
                ('result', fields.CharField(default='', max_length=32)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'delivery', 'app': 'models', 'pk_attr': 'id', 'table_description': "One attempt to reach one person through one channel, kept for tracing and for WeChat's"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='InboxMessage',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.UUIDField(default=uuid4, unique=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('account', fields.ForeignKeyField('models.WeChatAccount', source_field='account_id', db_constraint=True, to_field='id', related_name='inbox', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=48)),
                ('title', fields.CharField(max_length=100)),
                ('body', fields.TextField(default='', unique=False)),
                ('page', fields.CharField(default='', max_length=200)),
                ('data', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('referral', fields.ForeignKeyField('models.Referral', source_field='referral_id', null=True, db_constraint=True, to_field='id', related_name='inbox_messages', on_delete=OnDelete.SET_NULL)),
                ('dedupe_key', fields.CharField(unique=True, max_length=160)),
                ('read_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'inbox_message', 'app': 'models', 'indexes': [Index(fields=['account_id', 'read_at'])], 'pk_attr': 'id'},
            bases=['Record'],
        ),
        ops.CreateModel(
            name='SigningKey',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kid', fields.CharField(unique=True, max_length=32)),
                ('purpose', fields.CharField(default='slip', max_length=16)),
                ('private_key_enc', fields.TextField(unique=False)),
                ('public_key', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('retired_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'signing_key', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An Ed25519 key pair, the private half encrypted with DATA_KEY. Retired keys still verify.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Slip',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.UUIDField(default=uuid4, unique=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('referral', fields.ForeignKeyField('models.Referral', source_field='referral_id', db_constraint=True, to_field='id', related_name='slips', on_delete=OnDelete.CASCADE)),
                ('code', fields.CharField(unique=True, max_length=16)),
                ('state', fields.CharField(default='active', db_index=True, max_length=10)),
                ('kid', fields.CharField(max_length=32)),
                ('scheduled_date', fields.DateField()),
                ('department', fields.ForeignKeyField('models.Department', source_field='department_id', null=True, db_constraint=True, to_field='id', related_name='slips', on_delete=OnDelete.SET_NULL)),
                ('ward', fields.CharField(default='', max_length=64)),
                ('bed', fields.CharField(default='', max_length=32)),
                ('what_to_bring', fields.TextField(default='', unique=False)),
                ('certificate_no', fields.CharField(default='', max_length=64)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_reason', fields.CharField(default='', max_length=32)),
                ('checked_in_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('checked_in_by', fields.ForeignKeyField('models.Staff', source_field='checked_in_by_id', null=True, db_constraint=True, to_field='id', related_name='check_ins', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'slip', 'app': 'models', 'pk_attr': 'id'},
            bases=['Record'],
        ),
        ops.CreateModel(
            name='SubscriptionCredit',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('models.WeChatAccount', source_field='account_id', db_constraint=True, to_field='id', related_name='subscription_credits', on_delete=OnDelete.CASCADE)),
                ('template_id', fields.CharField(max_length=64)),
                ('credits', fields.IntField(default=0)),
                ('long_term', fields.BooleanField(default=False)),
                ('banned', fields.BooleanField(default=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'subscription_credit', 'app': 'models', 'unique_together': (('account', 'template_id'),), 'pk_attr': 'id', 'table_description': 'Sends left for one user and one template: one per accepted one-time subscription, or long-term.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='OutboxJob',
            name='locked_by',
            field=fields.CharField(default='', max_length=64),
        ),
    ]
