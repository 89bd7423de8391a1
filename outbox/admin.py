"""Looking after jobs: list them by state and send dead ones round again (`python app.py jobs` and the admin
endpoints).

Who sees what: an institution admin sees the jobs about referrals of their institution (source or target,
the referrals its staff can see), found through the `referral_id` in the job's payload; the payload itself is
never shown (it may name recipients). Jobs about no referral (bot replies, delivery probes) are for operators,
through the command line, which sees everything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tortoise import connections
from tortoise.expressions import Q, RawSQL, Subquery
from tortoise.functions import Count
from tortoise.queryset import QuerySet

from errors import Conflict, NotFound
from models import JobState, OutboxJob, Referral
from outbox.wakeup import request_wake
from security.audit import audited

STATES = (JobState.PENDING, JobState.RUNNING, JobState.DONE, JobState.DEAD)

# The payload's referral_id as a number (NULL when absent or not a number), per dialect.
_REFERRAL_ID_SQL = {
    "postgres": "CASE WHEN jsonb_typeof(\"payload\"->'referral_id') = 'number' "
                "THEN (\"payload\"->>'referral_id')::bigint END",
    "sqlite": "json_extract(\"payload\", '$.referral_id')",
}


def jobs_query(*, state: str | None = None, institution_id: int | None = None) -> QuerySet[OutboxJob]:
    """Jobs in `state` (all states when None); with `institution_id`, only those about its referrals."""
    query = OutboxJob.all()
    if state is not None:
        query = query.filter(state=state)
    if institution_id is not None:
        dialect = connections.get("default").capabilities.dialect
        ours = Referral.filter(Q(source_institution_id=institution_id) | Q(target_institution_id=institution_id))
        query = (query.annotate(about_referral=RawSQL(_REFERRAL_ID_SQL[dialect]))
                 .filter(about_referral__in=Subquery(ours.values("id"))))
    return query


async def referrals_of(jobs: list[OutboxJob]) -> dict[int, Referral]:
    """The referrals the jobs are about, by id."""
    ids = {job.payload.get("referral_id") for job in jobs if isinstance(job.payload, dict)}
    ids = {i for i in ids if isinstance(i, int)}
    return {r.id: r for r in await Referral.filter(id__in=list(ids))} if ids else {}


def job_view(job: OutboxJob, referral: Referral | None) -> dict:
    return {"id": str(job.id), "kind": job.kind, "state": job.state, "attempts": job.attempts,
            "last_error": job.last_error, "next_attempt_at": job.next_attempt_at, "created_at": job.created_at,
            "updated_at": job.updated_at,
            "referral": {"id": str(referral.public_id), "code": referral.code} if referral else None}


async def visible_job(job_id: int, *, institution_id: int | None = None) -> OutboxJob:
    job = await jobs_query(institution_id=institution_id).filter(id=job_id).first()
    if job is None:
        raise NotFound("未找到该任务", code="JOB_NOT_FOUND")
    return job


async def retry_job(job_id: int, *, institution_id: int | None = None,
                    actor_staff_id: int | None = None) -> OutboxJob:
    """Send a dead job round again: attempts start over, due now, dispatchers woken."""
    job = await visible_job(job_id, institution_id=institution_id)
    now = datetime.now(UTC)
    async with audited("admin.job_retried", "outbox_job", str(job.id), actor_staff_id=actor_staff_id,
                       institution_id=institution_id) as detail:
        revived = await OutboxJob.filter(id=job.id, state=JobState.DEAD).update(
            state=JobState.PENDING, attempts=0, next_attempt_at=now, lease_until=None, locked_by="",
            updated_at=now)
        if not revived:  # raised inside: no audit event for a retry that did not happen
            raise Conflict("只有已失败（dead）的任务可以重试", code="JOB_NOT_DEAD", detail={"state": job.state})
        detail.update(kind=job.kind, attempts=job.attempts)
    # As it was sent round (a woken dispatcher may have claimed it by the time anyone reads it again).
    job.state, job.attempts, job.next_attempt_at, job.updated_at = JobState.PENDING, 0, now, now
    job.lease_until, job.locked_by = None, ""
    request_wake()
    return job


async def retry_all_dead() -> int:
    """Every dead job round again (operators, after fixing what killed them)."""
    now = datetime.now(UTC)
    async with audited("admin.jobs_retried_all", "outbox_job", "*", actor_staff_id=None,
                       institution_id=None) as detail:
        count = await OutboxJob.filter(state=JobState.DEAD).update(
            state=JobState.PENDING, attempts=0, next_attempt_at=now, lease_until=None, locked_by="",
            updated_at=now)
        detail["count"] = count
    if count:
        request_wake()
    return count


async def purge_done(older_than: timedelta) -> int:
    """Delete finished jobs last touched more than `older_than` ago; dead jobs stay until someone retries them.
    Their dedupe keys go with them: every enqueue that could repeat one does so within minutes, not days."""
    cutoff = datetime.now(UTC) - older_than  # UTC: SQLite compares stored times as text
    return await OutboxJob.filter(state=JobState.DONE, updated_at__lt=cutoff).delete()


async def queue_figures() -> tuple[dict[str, int], float]:
    """Jobs by state, and how long the oldest due pending job has waited (seconds; 0 when none waits)."""
    counts = {str(state): 0 for state in STATES}
    for row in await OutboxJob.annotate(n=Count("id")).group_by("state").values("state", "n"):
        counts[str(row["state"])] = row["n"]
    now = datetime.now(UTC)
    oldest = await OutboxJob.filter(state=JobState.PENDING, next_attempt_at__lte=now) \
        .order_by("next_attempt_at").first().values_list("next_attempt_at", flat=True)
    return counts, max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
