"""Table 2's monthly rollup (`survey_month`): per China month and place, the invitations and their answers'
counts and sums. Whole months of a figure are read from it, the days of a month cut by the range from the
invitation rows, so the figure is exactly what the rows say.

It changes with the write it reflects, in that write's transaction: an invitation adds 1 invitation
(`invited`), an answer adds 1 answer, its satisfied 0/1 and each item's score (`answered`). The one statement
is an upsert (INSERT ... ON CONFLICT DO UPDATE, PostgreSQL and SQLite ≥ 3.24), since the month's row of a place
may not exist yet; concurrent writers to one row wait for each other on it. `rebuild` recomputes the whole
table from the invitations (seed-history after its bulk load, and the repair of a database restored from
elsewhere)."""

from __future__ import annotations

from tortoise import connections
from tortoise.transactions import in_transaction

from models import SurveyInvitation
from models.surveys import MAX_ITEMS

KEY = ("invited_month", "respondent", "form_id", "direction", "source_institution_id", "target_institution_id",
       "source_department_id", "target_department_id")
SUMS = ("invitations", "answers", "satisfied", *(f"sum{n}" for n in range(1, MAX_ITEMS + 1)),
        *(f"n{n}" for n in range(1, MAX_ITEMS + 1)))
# The rollup's sums over invitation rows (alias-free columns of survey_invitation), in the order of SUMS.
ROW_SUMS = ("COUNT(*)", "COUNT(answered_at)", "SUM(CASE WHEN satisfied THEN 1 ELSE 0 END)",
            *(f"COALESCE(SUM(s{n}), 0)" for n in range(1, MAX_ITEMS + 1)),
            *(f"COUNT(s{n})" for n in range(1, MAX_ITEMS + 1)))
ROW_KEY = ("invited_month", "respondent", "form_id", "direction", "source_institution_id", "target_institution_id",
           "COALESCE(source_department_id, 0)", "COALESCE(target_department_id, 0)")
REBUILD = (f"INSERT INTO survey_month ({', '.join(KEY + SUMS)}) "  # noqa: S608 (constants only)
           f"SELECT {', '.join(ROW_KEY + ROW_SUMS)} FROM survey_invitation "
           f"GROUP BY {', '.join(str(n) for n in range(1, len(KEY) + 1))}")


def _key(invitation: SurveyInvitation) -> dict:
    return {"invited_month": invitation.invited_month, "respondent": invitation.respondent,
            "form_id": invitation.form_id, "direction": invitation.direction,  # type: ignore[attr-defined]
            "source_institution_id": invitation.source_institution_id,
            "target_institution_id": invitation.target_institution_id,
            "source_department_id": invitation.source_department_id or 0,
            "target_department_id": invitation.target_department_id or 0}


async def _add(key: dict, deltas: dict[str, int]) -> None:
    connection = connections.get("default")
    postgres = connection.capabilities.dialect == "postgres"
    values = [*key.values(), *deltas.values()]
    marks = ", ".join(f"${n}" if postgres else "?" for n in range(1, len(values) + 1))
    columns = [*key, *deltas]
    await connection.execute_query(
        f"INSERT INTO survey_month ({', '.join(columns)}) VALUES ({marks}) "  # noqa: S608 (column names are ours)
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET "
        + ", ".join(f"{c} = survey_month.{c} + excluded.{c}" for c in deltas), values)


async def invited(invitation: SurveyInvitation) -> None:
    """A new invitation: call in the transaction that inserted it."""
    await _add(_key(invitation), {c: int(c == "invitations") for c in SUMS})


async def answered(invitation: SurveyInvitation, scores: list[int | None], satisfied: bool) -> None:
    """The invitation's one answer (scores s1..s8, None past the form's items): call in the answer's transaction."""
    padded = [*scores, *[None] * (MAX_ITEMS - len(scores))]
    deltas = {"invitations": 0, "answers": 1, "satisfied": int(satisfied)}
    deltas |= {f"sum{n}": s or 0 for n, s in enumerate(padded, start=1)}
    deltas |= {f"n{n}": int(s is not None) for n, s in enumerate(padded, start=1)}
    await _add(_key(invitation), deltas)


async def rebuild() -> None:
    """The whole rollup again from the invitation rows (exact by construction), in one transaction."""
    async with in_transaction() as tx:
        await tx.execute_query("DELETE FROM survey_month")
        await tx.execute_query(REBUILD)
