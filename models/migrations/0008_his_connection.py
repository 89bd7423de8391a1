from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0007_policy_early_arrival')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Institution',
            name='his_auth',
            field=fields.CharField(default='none', max_length=24),
        ),
        ops.AddField(
            model_name='Institution',
            name='his_client_id',
            field=fields.CharField(default='', max_length=200),
        ),
        ops.AddField(
            model_name='Institution',
            name='his_identifiers',
            field=fields.CharField(default='his', max_length=16),
        ),
        ops.AddField(
            model_name='Institution',
            name='his_key_id',
            field=fields.CharField(default='', max_length=100),
        ),
        ops.AddField(
            model_name='Institution',
            name='his_scope',
            field=fields.CharField(default='', max_length=300),
        ),
        ops.AddField(
            model_name='Institution',
            name='his_secret_enc',
            field=fields.TextField(default='', unique=False),
        ),
        ops.AddField(
            model_name='Institution',
            name='his_token_url',
            field=fields.CharField(default='', max_length=300),
        ),
    ]
