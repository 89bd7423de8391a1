"""Shared fixtures. Every app-driving test runs twice: on the embedded backends (SQLite file, in-process
KV) and on the services (PostgreSQL, Redis) when DATABASE_URL/REDIS_URL are set. Without them the
services run is skipped with a visible reason; with REQUIRE_SERVICES=1 it must run.

Each pytest run creates its own PostgreSQL database (dropped at the end) and its own Redis key
prefix, so runs never see each other's data."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

import db
from http_server import AppRunner
from settings import Settings

RUN_ID = uuid.uuid4().hex[:8]
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
BASE_DATABASE_URL = os.environ.get("DATABASE_URL", "")
BASE_REDIS_URL = os.environ.get("REDIS_URL", "")


def _services_missing() -> str:
    missing = [name for name, value in (("DATABASE_URL", BASE_DATABASE_URL), ("REDIS_URL", BASE_REDIS_URL))
               if not value]
    return ", ".join(missing)


def _pg_url(database: str) -> str:
    base, _, _ = BASE_DATABASE_URL.rpartition("/")
    return f"{base}/{database}"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(BASE_DATABASE_URL.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def make_settings(data_dir: Path, **overrides) -> Settings:
    """Settings for a test app: embedded defaults, background tasks on, secrets generated in data_dir.

    The outbox dispatcher stays off unless a test turns it on (embedded_dispatcher=True), so that a test that
    runs a job by hand is not raced by the dispatcher and timelines do not grow behind a test's back."""
    overrides.setdefault("jwt_secret", "test-jwt-secret-of-sufficient-length-0123456789")
    overrides.setdefault("data_key", bytes(range(32)))
    overrides.setdefault("lookup_key", bytes(range(32, 64)))
    overrides.setdefault("embedded_his", True)
    overrides.setdefault("embedded_dispatcher", False)
    return Settings.from_env({}, data_dir=data_dir, **overrides)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite database, copied for each test (migrating once per run keeps tests fast)."""
    directory = tmp_path_factory.mktemp("template")
    settings = make_settings(directory)
    asyncio.run(db.migrate(settings))
    return directory / "referral.sqlite3"


@pytest.fixture(scope="session")
def pg_database():
    """This run's own PostgreSQL database, migrated once, dropped at the end."""
    if not BASE_DATABASE_URL or not BASE_REDIS_URL:
        yield None
        return
    name = f"rc_test_{RUN_ID}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name)
    try:
        asyncio.run(db.migrate(make_settings(Path("/tmp"), database_url=url)))
        yield url
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate_pg(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'tortoise_migrations'")]
        if tables:
            await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


async def _drop_redis_prefix(prefix: str) -> None:
    from kv.redis_store import RedisKV

    store = RedisKV(BASE_REDIS_URL, prefix)
    try:
        await store.delete_prefix()
    finally:
        await store.close()


def require_services(what: str) -> None:
    """Skip visibly when PostgreSQL/Redis are not configured; with REQUIRE_SERVICES=1 fail instead."""
    missing = _services_missing()
    if missing:
        reason = f"{what} needs {missing} (PostgreSQL and Redis)"
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(params=["embedded", "services"])
def backend(request) -> str:
    if request.param == "services":
        require_services("the services backend")
    return request.param


@pytest.fixture
def services_database(pg_database) -> str:
    """This run's migrated PostgreSQL database, for tests that start processes of their own."""
    require_services("this test")
    return pg_database


@pytest.fixture
async def settings(backend, tmp_path, sqlite_template, pg_database) -> Settings:
    """Settings of a fresh, migrated, empty database and KV namespace for one test."""
    if backend == "embedded":
        shutil.copy(sqlite_template, tmp_path / "referral.sqlite3")
        yield make_settings(tmp_path)
        return
    url = pg_database
    await _truncate_pg(url)
    prefix = f"rc-test-{RUN_ID}-{uuid.uuid4().hex[:6]}:"
    yield make_settings(tmp_path, database_url=url, redis_url=BASE_REDIS_URL, redis_prefix=prefix)
    await _drop_redis_prefix(prefix)


@pytest.fixture
def app(settings):
    from app import create_app

    return create_app(settings)


class AppServer(TestServer):
    """The test server, with the app's own runner (aiohttp's parser errors in the JSON error shape)."""

    async def _make_runner(self, **kwargs) -> AppRunner:
        return AppRunner(self.app, **kwargs)


@pytest.fixture
async def client(aiohttp_client, app):
    return await aiohttp_client(AppServer(app))


def pytest_terminal_summary(terminalreporter) -> None:
    """Say where the console's browser tests left their screenshots (each page, to look at)."""
    from tests.console_browser import SCREENSHOTS, TAKEN

    if TAKEN:
        terminalreporter.write_line(f"console screenshots ({len(TAKEN)} pages): {SCREENSHOTS}")
