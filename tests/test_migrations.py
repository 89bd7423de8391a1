"""Migrations: the models and the migration files agree, and `migrate` applies them on both backends."""

from __future__ import annotations

from tortoise.context import TortoiseContext
from tortoise.migrations.autodetector import MigrationAutodetector

from db import tortoise_config


async def test_models_have_no_changes_missing_from_migrations():
    config = tortoise_config("sqlite://:memory:")
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        writers = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
    assert writers == [], "run `make makemigrations` and commit the migration"


async def test_migrated_database_has_every_table(settings):
    from tortoise import Tortoise

    from models import MODEL_MODULES  # noqa: F401  (the app's models, as the fixture migrated them)

    await Tortoise.init(config=tortoise_config(settings.db_url))
    try:
        conn = Tortoise.get_connection("default")
        if settings.embedded_db:
            rows = await conn.execute_query_dict("SELECT name FROM sqlite_master WHERE type='table'")
            tables = {r["name"] for r in rows}
        else:
            rows = await conn.execute_query_dict("SELECT tablename FROM pg_tables WHERE schemaname='public'")
            tables = {r["tablename"] for r in rows}
        expected = {model._meta.db_table for model in Tortoise.apps.get_models_iterable()}
        assert expected <= tables, expected - tables
        assert "tortoise_migrations" in tables
    finally:
        await Tortoise.close_connections()


def test_no_model_docstring_has_a_semicolon():
    """Tortoise turns model docstrings into table comments and its SQLite migration runner splits SQL on ';'."""
    import importlib

    from tortoise.models import Model

    from models import MODEL_MODULES

    for name in MODEL_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Model) and value.__module__ == name:
                assert ";" not in (value.__doc__ or ""), f"{value.__name__}: no ';' in a model docstring"
