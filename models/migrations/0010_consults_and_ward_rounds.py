from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.referrals import default_consult_accept_hours
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0009_stats_surveys')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Consultation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.UUIDField(default=uuid4, unique=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('code', fields.CharField(unique=True, max_length=20)),
                ('version', fields.IntField(default=1)),
                ('status', fields.CharField(default='requested', db_index=True, max_length=16)),
                ('urgency', fields.CharField(default='routine', max_length=12)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='consultations', on_delete=OnDelete.RESTRICT)),
                ('patient_name', fields.CharField(default='', max_length=50)),
                ('requester', fields.ForeignKeyField('models.Staff', source_field='requester_id', db_constraint=True, to_field='id', related_name='consultations_requested', on_delete=OnDelete.RESTRICT)),
                ('requester_institution', fields.ForeignKeyField('models.Institution', source_field='requester_institution_id', db_constraint=True, to_field='id', related_name='consultations_out', on_delete=OnDelete.RESTRICT)),
                ('target_institution', fields.ForeignKeyField('models.Institution', source_field='target_institution_id', db_constraint=True, to_field='id', related_name='consultations_in', on_delete=OnDelete.RESTRICT)),
                ('target_department', fields.ForeignKeyField('models.Department', source_field='target_department_id', db_constraint=True, to_field='id', related_name='consultations_in', on_delete=OnDelete.RESTRICT)),
                ('addressed_expert', fields.ForeignKeyField('models.Staff', source_field='addressed_expert_id', null=True, db_constraint=True, to_field='id', related_name='consultations_addressed', on_delete=OnDelete.SET_NULL)),
                ('expert', fields.ForeignKeyField('models.Staff', source_field='expert_id', null=True, db_constraint=True, to_field='id', related_name='consultations_accepted', on_delete=OnDelete.SET_NULL)),
                ('question', fields.CharField(default='', max_length=1000)),
                ('clinical', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('opinion', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('decline_code', fields.CharField(default='', max_length=32)),
                ('decline_text', fields.CharField(default='', max_length=500)),
                ('stage_started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('accepted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('chain_head', fields.CharField(default='', max_length=80)),
            ],
            options={'table': 'consultation', 'app': 'models', 'pk_attr': 'id'},
            bases=['Record'],
        ),
        ops.CreateModel(
            name='ConsultationAttachment',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('consultation', fields.ForeignKeyField('models.Consultation', source_field='consultation_id', db_constraint=True, to_field='id', related_name='attachments', on_delete=OnDelete.CASCADE)),
                ('filename', fields.CharField(max_length=200)),
                ('content_type', fields.CharField(max_length=64)),
                ('size', fields.IntField()),
                ('sha256', fields.CharField(max_length=64)),
                ('storage_key', fields.CharField(max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'consultation_attachment', 'app': 'models', 'pk_attr': 'id', 'table_description': "A referral attachment's bytes shared with a consultation, or a file uploaded to it."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ConsultationEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('seq', fields.IntField()),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('action', fields.CharField(max_length=24)),
                ('from_status', fields.CharField(default='', max_length=16)),
                ('to_status', fields.CharField(max_length=16)),
                ('actor_staff_id', fields.IntField(null=True)),
                ('actor_name', fields.CharField(default='', max_length=50)),
                ('actor_role', fields.CharField(default='', max_length=24)),
                ('actor_institution_id', fields.IntField(null=True)),
                ('actor_institution_name', fields.CharField(default='', max_length=100)),
                ('comment', fields.CharField(default='', max_length=1000)),
                ('data', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('prev_hash', fields.CharField(max_length=64)),
                ('hash', fields.CharField(max_length=64)),
                ('consultation', fields.ForeignKeyField('models.Consultation', source_field='consultation_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.RESTRICT)),
            ],
            options={'table': 'consultation_event', 'app': 'models', 'unique_together': (('consultation', 'seq'),), 'pk_attr': 'id'},
            bases=['TimelineEvent'],
        ),
        ops.CreateModel(
            name='ConsultationMember',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('consultation', fields.ForeignKeyField('models.Consultation', source_field='consultation_id', db_constraint=True, to_field='id', related_name='members', on_delete=OnDelete.CASCADE)),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', db_constraint=True, to_field='id', related_name='consultation_memberships', on_delete=OnDelete.CASCADE)),
                ('invited_by', fields.ForeignKeyField('models.Staff', source_field='invited_by_id', null=True, db_constraint=True, to_field='id', related_name='consultation_invitations', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'consultation_member', 'app': 'models', 'unique_together': (('consultation', 'staff'),), 'pk_attr': 'id', 'table_description': 'An expert invited to an accepted consultation (MDT): reads it and joins its conversation.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WardRound',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.UUIDField(default=uuid4, unique=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('code', fields.CharField(unique=True, max_length=20)),
                ('version', fields.IntField(default=1)),
                ('status', fields.CharField(default='scheduled', db_index=True, max_length=16)),
                ('referral', fields.ForeignKeyField('models.Referral', source_field='referral_id', db_constraint=True, to_field='id', related_name='ward_rounds', on_delete=OnDelete.RESTRICT)),
                ('patient', fields.ForeignKeyField('models.Patient', source_field='patient_id', db_constraint=True, to_field='id', related_name='ward_rounds', on_delete=OnDelete.RESTRICT)),
                ('local_institution', fields.ForeignKeyField('models.Institution', source_field='local_institution_id', db_constraint=True, to_field='id', related_name='ward_rounds_local', on_delete=OnDelete.RESTRICT)),
                ('remote_institution', fields.ForeignKeyField('models.Institution', source_field='remote_institution_id', db_constraint=True, to_field='id', related_name='ward_rounds_remote', on_delete=OnDelete.RESTRICT)),
                ('organiser', fields.ForeignKeyField('models.Staff', source_field='organiser_id', db_constraint=True, to_field='id', related_name='ward_rounds_organised', on_delete=OnDelete.RESTRICT)),
                ('scheduled_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('findings', fields.TextField(default='', unique=False)),
                ('repeat_days', fields.IntField(null=True)),
                ('repeat_until', fields.DateField(null=True)),
                ('previous', fields.ForeignKeyField('models.WardRound', source_field='previous_id', null=True, db_constraint=True, to_field='id', related_name='following', on_delete=OnDelete.SET_NULL)),
                ('cancel_reason', fields.CharField(default='', max_length=500)),
            ],
            options={'table': 'ward_round', 'app': 'models', 'pk_attr': 'id'},
            bases=['Record'],
        ),
        ops.CreateModel(
            name='WardRoundItem',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('round', fields.ForeignKeyField('models.WardRound', source_field='round_id', db_constraint=True, to_field='id', related_name='items', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=8)),
                ('n', fields.IntField()),
                ('text', fields.CharField(max_length=500)),
                ('due_date', fields.DateField(null=True)),
                ('author', fields.ForeignKeyField('models.Staff', source_field='author_id', null=True, db_constraint=True, to_field='id', related_name='ward_round_items', on_delete=OnDelete.SET_NULL)),
                ('acknowledged_by', fields.ForeignKeyField('models.Staff', source_field='acknowledged_by_id', null=True, db_constraint=True, to_field='id', related_name='ward_round_acks', on_delete=OnDelete.SET_NULL)),
                ('acknowledged_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'ward_round_item', 'app': 'models', 'unique_together': (('round', 'kind', 'n'),), 'pk_attr': 'id', 'table_description': 'A plan change (advice the local doctor acknowledges) or a follow-up task with a due date, numbered per'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WardRoundMember',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('round', fields.ForeignKeyField('models.WardRound', source_field='round_id', db_constraint=True, to_field='id', related_name='members', on_delete=OnDelete.CASCADE)),
                ('staff', fields.ForeignKeyField('models.Staff', source_field='staff_id', db_constraint=True, to_field='id', related_name='ward_round_memberships', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'ward_round_member', 'app': 'models', 'unique_together': (('round', 'staff'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='InstitutionPolicy',
            name='consult_accept_hours',
            field=fields.JSONField(default=default_consult_accept_hours, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='InstitutionPolicy',
            name='consult_opinion_is_review',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='Referral',
            name='consultation',
            field=fields.ForeignKeyField('models.Consultation', source_field='consultation_id', null=True, db_constraint=True, to_field='id', related_name='referrals', on_delete=OnDelete.SET_NULL),
        ),
        ops.AddField(
            model_name='Referral',
            name='reviewed_in_consultation',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='WeChatAccount',
            name='session_key_enc',
            field=fields.TextField(default='', unique=False),
        ),
    ]
