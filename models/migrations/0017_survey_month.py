from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields


# Existing answers: their figures onto the invitations, then the rollup from the invitations (the same statement
# as stats.rollup.REBUILD, written out so that the migration does not change with the code).
BACKFILL = """UPDATE survey_invitation SET
    satisfied = (SELECT r.satisfied FROM survey_response r WHERE r.invitation_id = survey_invitation.id),
    s1 = (SELECT r.s1 FROM survey_response r WHERE r.invitation_id = survey_invitation.id),
    s2 = (SELECT r.s2 FROM survey_response r WHERE r.invitation_id = survey_invitation.id),
    s3 = (SELECT r.s3 FROM survey_response r WHERE r.invitation_id = survey_invitation.id),
    s4 = (SELECT r.s4 FROM survey_response r WHERE r.invitation_id = survey_invitation.id),
    s5 = (SELECT r.s5 FROM survey_response r WHERE r.invitation_id = survey_invitation.id),
    s6 = (SELECT r.s6 FROM survey_response r WHERE r.invitation_id = survey_invitation.id),
    s7 = (SELECT r.s7 FROM survey_response r WHERE r.invitation_id = survey_invitation.id),
    s8 = (SELECT r.s8 FROM survey_response r WHERE r.invitation_id = survey_invitation.id)
WHERE answered_at IS NOT NULL"""
REBUILD = """INSERT INTO survey_month (invited_month, respondent, form_id, direction, source_institution_id, target_institution_id, source_department_id, target_department_id, invitations, answers, satisfied, sum1, sum2, sum3, sum4, sum5, sum6, sum7, sum8, n1, n2, n3, n4, n5, n6, n7, n8)
SELECT invited_month, respondent, form_id, direction, source_institution_id, target_institution_id,
    COALESCE(source_department_id, 0), COALESCE(target_department_id, 0), COUNT(*), COUNT(answered_at),
    SUM(CASE WHEN satisfied THEN 1 ELSE 0 END), COALESCE(SUM(s1), 0), COALESCE(SUM(s2), 0), COALESCE(SUM(s3), 0),
    COALESCE(SUM(s4), 0), COALESCE(SUM(s5), 0), COALESCE(SUM(s6), 0), COALESCE(SUM(s7), 0), COALESCE(SUM(s8), 0),
    COUNT(s1), COUNT(s2), COUNT(s3), COUNT(s4), COUNT(s5), COUNT(s6), COUNT(s7), COUNT(s8)
FROM survey_invitation GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"""


class Migration(migrations.Migration):
    dependencies = [('models', '0014_referral_consultation_index')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SurveyMonth',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('invited_month', fields.IntField()),
                ('respondent', fields.CharField(max_length=8)),
                ('form_id', fields.IntField()),
                ('direction', fields.CharField(max_length=8)),
                ('source_institution_id', fields.IntField()),
                ('target_institution_id', fields.IntField()),
                ('source_department_id', fields.IntField()),
                ('target_department_id', fields.IntField()),
                ('invitations', fields.IntField(default=0)),
                ('answers', fields.IntField(default=0)),
                ('satisfied', fields.IntField(default=0)),
                ('sum1', fields.IntField(default=0)),
                ('sum2', fields.IntField(default=0)),
                ('sum3', fields.IntField(default=0)),
                ('sum4', fields.IntField(default=0)),
                ('sum5', fields.IntField(default=0)),
                ('sum6', fields.IntField(default=0)),
                ('sum7', fields.IntField(default=0)),
                ('sum8', fields.IntField(default=0)),
                ('n1', fields.IntField(default=0)),
                ('n2', fields.IntField(default=0)),
                ('n3', fields.IntField(default=0)),
                ('n4', fields.IntField(default=0)),
                ('n5', fields.IntField(default=0)),
                ('n6', fields.IntField(default=0)),
                ('n7', fields.IntField(default=0)),
                ('n8', fields.IntField(default=0)),
            ],
            options={'table': 'survey_month', 'app': 'models', 'unique_together': (('invited_month', 'respondent', 'form_id', 'direction', 'source_institution_id', 'target_institution_id', 'source_department_id', 'target_department_id'),), 'pk_attr': 'id', 'table_description': "Table 2's rollup: the invitations of one China month and one place (respondent, questionnaire,"},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='SurveyInvitation',
            name='s1',
            field=fields.SmallIntField(null=True),
        ),
        ops.AddField(
            model_name='SurveyInvitation',
            name='s2',
            field=fields.SmallIntField(null=True),
        ),
        ops.AddField(
            model_name='SurveyInvitation',
            name='s3',
            field=fields.SmallIntField(null=True),
        ),
        ops.AddField(
            model_name='SurveyInvitation',
            name='s4',
            field=fields.SmallIntField(null=True),
        ),
        ops.AddField(
            model_name='SurveyInvitation',
            name='s5',
            field=fields.SmallIntField(null=True),
        ),
        ops.AddField(
            model_name='SurveyInvitation',
            name='s6',
            field=fields.SmallIntField(null=True),
        ),
        ops.AddField(
            model_name='SurveyInvitation',
            name='s7',
            field=fields.SmallIntField(null=True),
        ),
        ops.AddField(
            model_name='SurveyInvitation',
            name='s8',
            field=fields.SmallIntField(null=True),
        ),
        ops.AddField(
            model_name='SurveyInvitation',
            name='satisfied',
            field=fields.BooleanField(null=True),
        ),
        ops.RunSQL([BACKFILL, REBUILD], reverse_sql=["SELECT 1"]),
    ]
