"""Several writes as one PostgreSQL statement (data-modifying CTEs), sent through Tortoise's connection.

Each statement is a round trip, and on this stack the round trip (a socket write, the driver, the ORM building
the SQL) costs more than the work of a small write; the hot paths (a referral transition, its notification
fan-out) write a few rows at once, so on PostgreSQL they send them as one statement. Rows are Tortoise model
instances, their values converted by the models' own fields, so what is stored is what the ORM would store.
SQLite cannot modify data in a CTE: its callers keep the ORM's statements there (`is_postgres`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tortoise import connections
from tortoise.models import Model


def is_postgres() -> bool:
    """Whether the default connection (inside a transaction, the transaction's) is PostgreSQL."""
    return connections.get("default").capabilities.dialect == "postgres"


def dialect_sql(text: str) -> str:
    """`$n` placeholders as the default connection's dialect writes them (SQLite: `?`, in order)."""
    return text if is_postgres() else re.sub(r"\$\d+", "?", text)


class Batch:
    """One statement under construction: named CTEs and their numbered parameters."""

    def __init__(self) -> None:
        self.params: list = []
        self.ctes: list[str] = []

    def param(self, value: object) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def add(self, name: str, sql: str) -> None:
        self.ctes.append(f"{name} AS ({sql})")

    def update(self, name: str, row: Model, changes: dict, where: dict, returning: str = "id") -> None:
        """UPDATE `row`'s table SET `changes` WHERE `where` (field names and values, both)."""
        meta = row._meta
        sets = ", ".join(f'"{meta.fields_db_projection[field]}" = '
                         f"{self.param(meta.fields_map[field].to_db_value(value, None))}"
                         for field, value in changes.items())
        conditions = " AND ".join(f'"{meta.fields_db_projection[field]}" = {self.param(value)}'
                                  for field, value in where.items())
        # Only the models' own table and column names and numbered placeholders go into the text.
        self.add(name, f'UPDATE "{meta.db_table}" SET {sets} WHERE {conditions} RETURNING "{returning}"')  # noqa: S608

    def insert(self, name: str, row: Model, *, only_with: str | None = None, ignore_conflicts: bool = False,
               returning: str | None = None) -> None:
        """INSERT the unsaved `row`; `only_with`: only if the CTE of that name returned a row (the INSERT selects
        from it, so it writes nothing when, say, a conditional UPDATE matched nothing)."""
        meta = row._meta
        columns, values = [], []
        for field, column in meta.fields_db_projection.items():
            if meta.fields_map[field].generated:
                continue
            columns.append(f'"{column}"')
            # As Tortoise's INSERT computes it: defaults, auto_now times and JSON encoding included.
            values.append(self.param(meta.fields_map[field].to_db_value(getattr(row, field), row)))
        source = (f"SELECT {', '.join(values)} FROM {only_with}" if only_with  # noqa: S608 (as above)
                  else f"VALUES ({', '.join(values)})")
        sql = f'INSERT INTO "{meta.db_table}" ({", ".join(columns)}) {source}'  # noqa: S608
        if ignore_conflicts:
            sql += " ON CONFLICT DO NOTHING"
        if returning:
            sql += f' RETURNING "{returning}"'
        self.add(name, sql)

    async def run(self, select: str = "SELECT 1") -> list[dict]:
        """Send the statement, ending in `select` (what it answers)."""
        text = "WITH " + ",\n".join(self.ctes) + "\n" + select
        return await connections.get("default").execute_query_dict(text, self.params)


async def insert_all(rows: Sequence[Model]) -> None:
    """Insert unsaved rows (of any models), each ignoring a conflict on a unique key: one statement on
    PostgreSQL, one bulk INSERT per model elsewhere."""
    if not rows:
        return
    if is_postgres():
        batch = Batch()
        for n, row in enumerate(rows):
            batch.insert(f"row{n}", row, ignore_conflicts=True)
        await batch.run()
        return
    by_model: dict[type[Model], list[Model]] = {}
    for row in rows:
        by_model.setdefault(type(row), []).append(row)
    for model, same in by_model.items():
        await model.bulk_create(same, ignore_conflicts=True)
