"""Database configuration: SQLite URLs as they are; PostgreSQL pools whose connections skip asyncpg's reset
round trip on release and still never hand on an open transaction."""

from __future__ import annotations

import pytest
from tortoise import connections
from tortoise.transactions import in_transaction

from db import PooledConnection, tortoise_config
from models import Institution
from tests.support import seeded


def test_sqlite_urls_are_passed_through_and_postgres_urls_get_the_pooled_connection():
    assert tortoise_config("sqlite:///tmp/x.sqlite3")["connections"]["default"] == "sqlite:///tmp/x.sqlite3"
    pg = tortoise_config("postgres://app@db.internal:5433/referral")["connections"]["default"]
    assert pg["engine"] == "tortoise.backends.asyncpg"
    assert pg["credentials"]["connection_class"] is PooledConnection
    assert (pg["credentials"]["host"], pg["credentials"]["port"], pg["credentials"]["database"]) == \
        ("db.internal", 5433, "referral")


@pytest.mark.parametrize("backend", ["services"], indirect=True)  # SQLite has one connection and no pool
async def test_a_released_postgres_connection_carries_no_transaction(client):
    await seeded(client)
    pool = connections.get("default")._pool
    async with pool.acquire() as conn:
        assert isinstance(conn, PooledConnection) and conn.get_reset_query() == ""
        await conn.execute("BEGIN")  # a connection given back mid-transaction (a bug elsewhere)...
    async with pool.acquire() as conn:
        assert not conn.is_in_transaction()  # ...is rolled back by asyncpg before anybody else gets it
    async with in_transaction():
        assert await Institution.filter(code="SUBEI").exists()
