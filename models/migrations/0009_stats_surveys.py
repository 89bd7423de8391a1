from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0004_policy_what_to_bring')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Baseline',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('institution', fields.ForeignKeyField('models.Institution', source_field='institution_id', db_constraint=True, to_field='id', related_name='baselines', on_delete=OnDelete.CASCADE)),
                ('direction', fields.CharField(max_length=8)),
                ('period', fields.CharField(max_length=50)),
                ('mean_days', fields.FloatField()),
                ('n', fields.IntField()),
                ('source_note', fields.CharField(default='', max_length=300)),
                ('updated_by_staff_id', fields.IntField(null=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'baseline', 'app': 'models', 'unique_together': (('institution', 'direction'),), 'pk_attr': 'id', 'table_description': 'The waiting time of an institution before the platform (常规双向转诊 in the paper), one per direction.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SurveyForm',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('respondent', fields.CharField(max_length=8)),
                ('version', fields.IntField()),
                ('title', fields.CharField(max_length=100)),
                ('intro', fields.CharField(default='', max_length=300)),
                ('items', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('comment_prompt', fields.CharField(default='', max_length=100)),
                ('created_by_staff_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'survey_form', 'app': 'models', 'unique_together': (('respondent', 'version'),), 'pk_attr': 'id', 'table_description': 'One version of the questionnaire for patients or for doctors. Items are [{key, text}] in order, the'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SurveyInvitation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('public_id', fields.UUIDField(default=uuid4, unique=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('form', fields.ForeignKeyField('models.SurveyForm', source_field='form_id', db_constraint=True, to_field='id', related_name='invitations', on_delete=OnDelete.RESTRICT)),
                ('referral', fields.ForeignKeyField('models.Referral', source_field='referral_id', db_constraint=True, to_field='id', related_name='survey_invitations', on_delete=OnDelete.CASCADE)),
                ('occasion', fields.CharField(max_length=12)),
                ('respondent', fields.CharField(max_length=8)),
                ('patient_id', fields.IntField(null=True)),
                ('staff_id', fields.IntField(null=True, db_index=True)),
                ('direction', fields.CharField(max_length=8)),
                ('source_institution_id', fields.IntField()),
                ('target_institution_id', fields.IntField()),
                ('source_department_id', fields.IntField(null=True)),
                ('target_department_id', fields.IntField(null=True)),
                ('invited_day', fields.DateField()),
                ('invited_month', fields.IntField()),
                ('answered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'survey_invitation', 'app': 'models', 'unique_together': (('referral', 'occasion'),), 'indexes': [Index(fields=['patient_id', 'answered_at']), Index(fields=['invited_day', 'respondent'])], 'pk_attr': 'id', 'table_description': 'A person asked to rate one referral on one occasion. Where the referral went is copied so that the'},
            bases=['Record'],
        ),
        ops.CreateModel(
            name='SurveyResponse',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('invitation', fields.OneToOneField('models.SurveyInvitation', source_field='invitation_id', db_constraint=True, to_field='id', related_name='response', on_delete=OnDelete.CASCADE)),
                ('form', fields.ForeignKeyField('models.SurveyForm', source_field='form_id', db_constraint=True, to_field='id', related_name='responses', on_delete=OnDelete.RESTRICT)),
                ('s1', fields.SmallIntField(null=True)),
                ('s2', fields.SmallIntField(null=True)),
                ('s3', fields.SmallIntField(null=True)),
                ('s4', fields.SmallIntField(null=True)),
                ('s5', fields.SmallIntField(null=True)),
                ('s6', fields.SmallIntField(null=True)),
                ('s7', fields.SmallIntField(null=True)),
                ('s8', fields.SmallIntField(null=True)),
                ('satisfied', fields.BooleanField()),
                ('comment', fields.CharField(default='', max_length=500)),
                ('account_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'survey_response', 'app': 'models', 'pk_attr': 'id', 'table_description': 'The answer to one invitation: the score 1-5 of each item in the order of the form (s1 = overall).'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Referral',
            name='decisions',
            field=fields.SmallIntField(default=0),
        ),
        ops.AddField(
            model_name='Referral',
            name='late_decisions',
            field=fields.SmallIntField(default=0),
        ),
        ops.AddField(
            model_name='Referral',
            name='redirects',
            field=fields.SmallIntField(default=0),
        ),
        ops.AddField(
            model_name='Referral',
            name='source_approved_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Referral',
            name='submitted_day',
            field=fields.DateField(null=True),
        ),
        ops.AddField(
            model_name='Referral',
            name='submitted_month',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Referral',
            name='wait_bed_s',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Referral',
            name='wait_source_s',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Referral',
            name='wait_target_s',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='Referral',
            name='wait_total_s',
            field=fields.IntField(null=True),
        ),
        ops.AddIndex(
            model_name='Referral',
            index=Index(fields=['submitted_day', 'direction']),
        ),
        ops.AddIndex(
            model_name='Referral',
            index=Index(fields=['source_institution_id', 'submitted_day']),
        ),
        ops.AddIndex(
            model_name='Referral',
            index=Index(fields=['target_institution_id', 'submitted_day']),
        ),
    ]
