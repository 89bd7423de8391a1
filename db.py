"""Tortoise ORM configuration, start-up/shutdown and migrations (Tortoise's own migration tool)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
from tortoise import Tortoise
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext

from directory import cache as directory_cache
from models import MODEL_MODULES
from settings import Settings

MIGRATIONS_MODULE = "models.migrations"


class PooledConnection(asyncpg.connection.Connection):
    """A PostgreSQL connection handed back to the pool without asyncpg's reset query.

    Tortoise takes a pool connection for every statement outside a transaction, and asyncpg's default release
    sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` each time: a second round trip
    for every such statement (about a third of its cost in the lifecycle bench). We hold none of that session
    state: no session advisory locks (security.audit takes a transaction-scoped one), no cursors, no LISTEN,
    no SET. asyncpg still rolls back a transaction left open before the connection goes back."""

    def get_reset_query(self) -> str:
        return ""


def _connection(db_url: str) -> str | dict[str, Any]:
    if not db_url.startswith(("postgres://", "postgresql://")):
        return db_url
    config = expand_db_url(db_url)
    config["credentials"]["connection_class"] = PooledConnection
    return config


def tortoise_config(db_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": _connection(db_url)},
        "apps": {"models": {"models": MODEL_MODULES, "default_connection": "default",
                            "migrations": MIGRATIONS_MODULE}},
        "use_tz": True,
        "timezone": "UTC",
    }


async def open_db(settings: Settings) -> TortoiseContext:
    """Initialise Tortoise for this process; handlers and background tasks see it through the
    global fallback context because aiohttp runs them in tasks created outside start-up."""
    if settings.embedded_db:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Tortoise caches each model's INSERT SQL by connection name, not by dialect: a process that opens
    # SQLite and later PostgreSQL under the name "default" (the test suite does) would reuse "?" placeholders.
    EXECUTOR_CACHE.clear()
    directory_cache.clear()  # rows of another database (each test opens its own) must not be served
    return await Tortoise.init(config=tortoise_config(settings.db_url), _enable_global_fallback=True)


async def close_db() -> None:
    await Tortoise.close_connections()


async def migrate(settings: Settings, progress: Callable[[str], None] | None = None) -> None:
    """Apply every pending migration (what `python app.py migrate` and the release process run)."""
    from tortoise.migrations.api.migrate import migrate as run_migrations

    if settings.embedded_db:
        settings.data_dir.mkdir(parents=True, exist_ok=True)

    def report(event: str, app_label: str, name: str) -> None:
        if progress and event == "apply_done":
            progress(f"已应用迁移 {app_label}.{name}")

    try:
        await run_migrations(config=tortoise_config(settings.db_url), progress=report)
    finally:
        await Tortoise.close_connections()


# For Tortoise's own command line: `tortoise -c db.TORTOISE_ORM makemigrations` (make makemigrations).
TORTOISE_ORM = tortoise_config("sqlite://:memory:")
