from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0010_consults_and_ward_rounds')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Conversation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.UUIDField(default=uuid4, unique=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('kind', fields.CharField(max_length=16)),
                ('subject_id', fields.UUIDField()),
                ('last_seq', fields.IntField(default=0)),
            ],
            options={'table': 'conversation', 'app': 'models', 'unique_together': (('kind', 'subject_id'),), 'pk_attr': 'id', 'table_description': "One per consultation or ward round (`subject_id` is that row's public UUID)."},
            bases=['Record'],
        ),
        ops.CreateModel(
            name='ChatAttachment',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.UUIDField(default=uuid4, unique=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='attachments', on_delete=OnDelete.CASCADE)),
                ('uploaded_by', fields.ForeignKeyField('models.Staff', source_field='uploaded_by_id', db_constraint=True, to_field='id', related_name='chat_attachments', on_delete=OnDelete.RESTRICT)),
                ('filename', fields.CharField(max_length=200)),
                ('content_type', fields.CharField(max_length=64)),
                ('size', fields.IntField()),
                ('sha256', fields.CharField(max_length=64)),
                ('storage_key', fields.CharField(max_length=200)),
            ],
            options={'table': 'chat_attachment', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An image or file uploaded into a conversation, sent as a message that names it.'},
            bases=['Record'],
        ),
        ops.CreateModel(
            name='ChatMessage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
                ('seq', fields.IntField()),
                ('sender', fields.ForeignKeyField('models.Staff', source_field='sender_id', db_constraint=True, to_field='id', related_name='chat_messages', on_delete=OnDelete.RESTRICT)),
                ('client_msg_id', fields.CharField(max_length=64)),
                ('type', fields.CharField(max_length=16)),
                ('body', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('check_state', fields.CharField(default='passed', max_length=12)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'chat_message', 'app': 'models', 'unique_together': (('conversation', 'seq'), ('conversation', 'sender', 'client_msg_id')), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ConversationParticipant',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='participants', on_delete=OnDelete.CASCADE)),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.CASCADE)),
                ('last_read_seq', fields.IntField(default=0)),
                ('joined_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('left_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'conversation_participant', 'app': 'models', 'unique_together': (('conversation', 'staff'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
