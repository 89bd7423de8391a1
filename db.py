"""Tortoise ORM configuration, start-up/shutdown and migrations (Tortoise's own migration tool)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.context import TortoiseContext

from directory import cache as directory_cache
from models import MODEL_MODULES
from settings import Settings

MIGRATIONS_MODULE = "models.migrations"


def tortoise_config(db_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": db_url},
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
