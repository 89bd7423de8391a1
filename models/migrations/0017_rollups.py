from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

# Existing rows: the answers' figures onto their invitations, then both rollups from their rows (the statements
# of stats.rollup.Rollup.rebuild_sql, written out so that the migration does not change with the code).
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
REBUILD_REFERRALS = """INSERT INTO referral_month (submitted_month, direction, source_institution_id, target_institution_id, source_department_id, target_department_id, status, rejection_code, n, accepted, redirected, redirects, decisions, late_decisions, late_referrals, n_total, sum_total)
SELECT submitted_month, direction, source_institution_id, target_institution_id, COALESCE(source_department_id, 0), COALESCE(target_department_id, 0), status, rejection_code, COUNT(*), COUNT(wait_target_s), SUM(CASE WHEN redirects > 0 THEN 1 ELSE 0 END), SUM(redirects), SUM(decisions), SUM(late_decisions), SUM(CASE WHEN late_decisions > 0 THEN 1 ELSE 0 END), COUNT(wait_total_s), COALESCE(SUM(wait_total_s), 0)
FROM referral WHERE submitted_day IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"""
REBUILD_SURVEYS = """INSERT INTO survey_month (invited_month, respondent, form_id, direction, source_institution_id, target_institution_id, source_department_id, target_department_id, invitations, answers, satisfied, sum1, sum2, sum3, sum4, sum5, sum6, sum7, sum8, n1, n2, n3, n4, n5, n6, n7, n8)
SELECT invited_month, respondent, form_id, direction, source_institution_id, target_institution_id, COALESCE(source_department_id, 0), COALESCE(target_department_id, 0), COUNT(*), COUNT(answered_at), SUM(CASE WHEN satisfied THEN 1 ELSE 0 END), COALESCE(SUM(s1), 0), COALESCE(SUM(s2), 0), COALESCE(SUM(s3), 0), COALESCE(SUM(s4), 0), COALESCE(SUM(s5), 0), COALESCE(SUM(s6), 0), COALESCE(SUM(s7), 0), COALESCE(SUM(s8), 0), COUNT(s1), COUNT(s2), COUNT(s3), COUNT(s4), COUNT(s5), COUNT(s6), COUNT(s7), COUNT(s8)
FROM survey_invitation WHERE 1 = 1 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"""


class Migration(migrations.Migration):
    dependencies = [('models', '0014_referral_consultation_index')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ReferralMonth',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('submitted_month', fields.IntField()),
                ('direction', fields.CharField(max_length=8)),
                ('source_institution_id', fields.IntField()),
                ('target_institution_id', fields.IntField()),
                ('source_department_id', fields.IntField()),
                ('target_department_id', fields.IntField()),
                ('status', fields.CharField(max_length=16)),
                ('rejection_code', fields.CharField(max_length=32)),
                ('n', fields.IntField(default=0)),
                ('accepted', fields.IntField(default=0)),
                ('redirected', fields.IntField(default=0)),
                ('redirects', fields.IntField(default=0)),
                ('decisions', fields.IntField(default=0)),
                ('late_decisions', fields.IntField(default=0)),
                ('late_referrals', fields.IntField(default=0)),
                ('n_total', fields.IntField(default=0)),
                ('sum_total', fields.BigIntField(default=0)),
            ],
            options={'table': 'referral_month', 'app': 'models', 'unique_together': (('submitted_month', 'direction', 'source_institution_id', 'target_institution_id', 'source_department_id', 'target_department_id', 'status', 'rejection_code'),), 'pk_attr': 'id', 'table_description': "The summary's and Table 1's rollup: the submitted referrals of one China month and one place"},
            bases=['Model'],
        ),
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
            ops.RunSQL([BACKFILL, REBUILD_REFERRALS, REBUILD_SURVEYS], reverse_sql=["SELECT 1"]),
    ]
