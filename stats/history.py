"""`python app.py seed-history --referrals N --years Y`: a realistic referral history for the figures and the
benchmark, written in bulk (COPY on PostgreSQL, batched executemany on SQLite).

What is drawn: the direction (up 55 %, down 35 %, lateral 10 %) between the demo consortium's institutions,
the urgency, each stage's length (so that up-referrals wait about 3.2 days and down-referrals about 2.5, the
paper's platform figures), rejections with their reasons, cancellations, redirects, no-shows, approvals past
the deadline, the reserved beds each admission day published and booked, and the satisfaction surveys with
answers (patients about 92 % satisfied, doctors about 89 %). Every figure column is filled exactly as the
transitions fill it, so the statistics read history and live referrals alike.

Generated referrals carry the code prefix HX and no timeline (version 0): they are closed history, and
`audit-verify` accepts a referral without events at version 0. The command refuses a database holding any
other referral unless forced."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from tortoise import connections

from directory.seed import seed_demo
from errors import Conflict
from models import CapacityDay, Department, Institution, Patient, Referral, Staff
from referrals.clinical import REJECTION_REASONS
from referrals.state_machine import direction_of
from security.crypto import PersonalDataCipher
from security.idcard import make_id_number
from stats import rollup
from stats.facts import month_of
from surveys.forms import current_form
from timeutil import CHINA_TZ

CODE_PREFIX = "HX"
BATCH = 20_000
DAY = 86400.0
# Mean days per stage, by direction: source approval, target approval, waiting for the bed.
STAGE_MEANS = {"up": (0.45, 0.85, 1.95), "down": (0.3, 0.6, 1.65), "lateral": (0.4, 0.7, 1.8)}
DEADLINE_HOURS = {"routine": 48, "urgent": 12, "emergency": 2}
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = ["建国", "秀英", "桂兰", "志强", "海燕", "玉梅", "德明", "淑珍", "永红", "国平", "晓东", "丽华"]
REFERRAL_COLUMNS = (
    "id", "public_id", "created_at", "updated_at", "code", "version", "status", "direction", "urgency",
    "needs_source_approval", "patient_id", "referrer_id", "source_institution_id", "source_department_id",
    "target_institution_id", "target_department_id", "clinical", "contact_phone_enc", "patient_name",
    "submitted_at", "stage_started_at", "decided_at", "admitted_at", "closed_at", "admission_date",
    "admission_department_id", "ward", "bed", "rejection_code", "rejection_text", "return_summary", "his_sync",
    "admission_certificate_no", "chain_head", "submitted_day", "submitted_month", "source_approved_at",
    "wait_source_s", "wait_target_s", "wait_bed_s", "wait_total_s", "redirects", "decisions", "late_decisions",
    "reviewed_in_consultation")
INVITATION_COLUMNS = (
    "id", "public_id", "created_at", "updated_at", "form_id", "referral_id", "occasion", "respondent",
    "patient_id", "staff_id", "direction", "source_institution_id", "target_institution_id", "source_department_id",
    "target_department_id", "invited_day", "invited_month", "answered_at", "satisfied", "s1", "s2", "s3", "s4", "s5",
    "s6", "s7", "s8")
RESPONSE_COLUMNS = ("id", "invitation_id", "form_id", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "satisfied",
                    "comment", "account_id", "created_at")
# Score weights 1..5: patients are a little happier than doctors, as in the paper's Table 2 (92 %, 89 %).
SCORE_WEIGHTS = {"patient": (1, 2, 5, 37, 55), "doctor": (1, 3, 7, 40, 49)}
ANSWER_RATE = {"patient": 0.7, "doctor": 0.8}


class RealReferrals(Conflict):
    code = "REAL_REFERRALS"


@dataclass
class Place:
    institution: Institution
    departments: list[Department]
    doctors: list[int]


async def _places() -> list[Place]:
    places = []
    for institution in await Institution.filter(deleted_at=None).order_by("id"):
        departments = list(await Department.filter(institution_id=institution.id, deleted_at=None).order_by("id"))
        doctors = [s.id for s in await Staff.filter(institution_id=institution.id, deleted_at=None)
                   if "doctor" in (s.roles or [])]
        if departments and doctors:
            places.append(Place(institution, departments, doctors))
    return places


async def _patients(cipher: PersonalDataCipher, count: int, rng: random.Random) -> list[tuple[int, str]]:
    """`count` synthetic patients (valid ID numbers, encrypted like real ones): (id, name)."""
    start = await Patient.all().count()
    rows = []
    for n in range(start, start + count):
        birth = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 60))
        id_number = make_id_number(f"3210{n // 999 % 90 + 10:02d}", birth, n % 999 + 1)
        name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        rows.append(Patient(name=name, id_number_enc=cipher.encrypt(id_number, "id_number"),
                            id_number_hash=cipher.lookup_hash("id_number", id_number), gender="unknown",
                            birth_date=birth))
    await Patient.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    return [(p.id, p.name) for p in await Patient.filter(id__gt=0).order_by("-id").limit(count)]


class Writer:
    """Bulk rows into a table: COPY on PostgreSQL, one executemany per batch on SQLite."""

    def __init__(self) -> None:
        self.connection = connections.get("default")
        self.postgres = self.connection.capabilities.dialect == "postgres"

    async def write(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        if self.postgres:
            async with self.connection.acquire_connection() as raw:
                await raw.copy_records_to_table(table, records=rows, columns=list(columns))
            return
        marks = ", ".join("?" for _ in columns)
        await self.connection.execute_many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608
                                           rows)

    def public_id(self, rng: random.Random) -> uuid.UUID | str:
        """A random UUID (from a generator seeded once by the system: no system call per id) as the backend's
        driver wants it."""
        value = uuid.UUID(int=rng.getrandbits(128), version=4)
        return value if self.postgres else str(value)

    async def next_id(self, table: str) -> int:
        rows = await self.connection.execute_query_dict(f"SELECT COALESCE(MAX(id), 0) AS m FROM {table}")  # noqa: S608
        return int(rows[0]["m"]) + 1

    async def fix_sequence(self, table: str) -> None:
        if self.postgres:
            await self.connection.execute_script(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")  # noqa: S608


def _draw_seconds(rng: random.Random, mean_days: float) -> int:
    # A gamma with shape 2: most stages near the mean, a long tail (a few wait a week).
    return max(60, int(rng.gammavariate(2.0, mean_days / 2.0) * DAY))


async def generate(cipher: PersonalDataCipher, *, referrals: int, years: float, force: bool = False,
                   seed: int = 12, end: datetime | None = None,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Write `referrals` closed referrals submitted over the `years` before `end` (default: two weeks ago),
    with their reserved beds and surveys. Returns counts of what was written."""
    if not force and await Referral.exclude(code__startswith=CODE_PREFIX).exists():
        raise RealReferrals("数据库中已有真实转诊数据，生成历史数据会混入统计；确需生成请加 --force",
                            code="REAL_REFERRALS")
    await seed_demo()
    rng = random.Random(seed)  # the history: the same seed draws the same one
    ids = random.Random()  # public ids: never the same twice, whatever the seed
    started = time.monotonic()
    places = await _places()
    patients = await _patients(cipher, min(max(referrals // 20, 50), 20_000), rng)
    forms = {r: (await current_form(r)) for r in ("patient", "doctor")}
    form_items = {r: len(f.items) for r, f in forms.items()}
    writer = Writer()
    end = end or datetime.now(UTC) - timedelta(days=14)
    span = years * 365.25 * DAY
    referral_id = await writer.next_id("referral")
    invitation_id = await writer.next_id("survey_invitation")
    response_id = await writer.next_id("survey_response")
    beds: Counter = Counter()
    counts: Counter = Counter()
    by_level = {level: [p for p in places if str(p.institution.level) == level]
                for level in ("tertiary", "county", "primary")}
    direction_pairs = {"up": [("primary", "county"), ("primary", "tertiary"), ("county", "tertiary")],
                       "down": [("tertiary", "county"), ("tertiary", "primary"), ("county", "primary")],
                       "lateral": [("primary", "primary"), ("county", "county")]}
    batch_referrals: list[tuple] = []
    batch_invitations: list[tuple] = []
    batch_responses: list[tuple] = []

    async def flush() -> None:
        await writer.write("referral", REFERRAL_COLUMNS, batch_referrals)
        await writer.write("survey_invitation", INVITATION_COLUMNS, batch_invitations)
        await writer.write("survey_response", RESPONSE_COLUMNS, batch_responses)
        batch_referrals.clear()
        batch_invitations.clear()
        batch_responses.clear()

    for index in range(referrals):
        wanted = rng.choices(("up", "down", "lateral"), weights=(55, 35, 10))[0]
        source_level, target_level = rng.choice(direction_pairs[wanted])
        source = rng.choice(by_level[source_level])
        target = rng.choice([p for p in by_level[target_level] if p is not source] or by_level[target_level])
        if target is source:
            continue
        direction = str(direction_of(source_level, target_level))
        urgency = rng.choices(("routine", "urgent", "emergency"), weights=(80, 15, 5))[0]
        deadline = DEADLINE_HOURS[urgency] * 3600
        patient_id, patient_name = rng.choice(patients)
        target_department = rng.choice(target.departments)
        submitted = end - timedelta(seconds=rng.random() * span)
        submitted_day = submitted.astimezone(CHINA_TZ).date()
        needs_source = direction != "down"
        means = STAGE_MEANS[direction]
        row = dict(status="completed", source_approved_at=None, wait_source_s=None, wait_target_s=None,
                   wait_bed_s=None, wait_total_s=None, decided_at=None, admitted_at=None, closed_at=None,
                   admission_date=None, admission_department_id=None, rejection_code="", redirects=0,
                   decisions=0, late_decisions=0, stage_started_at=submitted)
        at = submitted
        fate = rng.random()
        if needs_source:
            wait = _draw_seconds(rng, means[0])
            at = submitted + timedelta(seconds=wait)
            row.update(decisions=1, late_decisions=int(wait > deadline))
            if fate < 0.02:
                row.update(status="rejected", decided_at=at, closed_at=at,
                           rejection_code=rng.choice(["not_indicated", "incomplete", "patient_declined"]))
            else:
                row.update(source_approved_at=at, wait_source_s=wait, stage_started_at=at)
        if row["status"] == "completed" and fate < 0.05:
            # Cancelled by the referrer while the target decided.
            at = at + timedelta(seconds=_draw_seconds(rng, 0.3))
            row.update(status="cancelled", closed_at=at)
        if row["status"] == "completed":
            stage_start = at
            if rng.random() < 0.05:  # redirected once before a decision
                redirect_at = at + timedelta(seconds=_draw_seconds(rng, 0.4))
                row["late_decisions"] += int((redirect_at - at).total_seconds() > deadline)
                row.update(redirects=1, decisions=row["decisions"] + 1, stage_started_at=redirect_at)
                stage_start = redirect_at
            decided = stage_start + timedelta(seconds=_draw_seconds(rng, means[1] * 0.8))
            row["decisions"] += 1
            row["late_decisions"] += int((decided - stage_start).total_seconds() > deadline)
            row["decided_at"] = decided
            if fate > 0.93:
                row.update(status="rejected", closed_at=decided,
                           rejection_code=rng.choices(list(REJECTION_REASONS), weights=(45, 15, 10, 15, 10, 5))[0])
            else:
                row["wait_target_s"] = int((decided - at).total_seconds())
                admitted = decided + timedelta(seconds=_draw_seconds(rng, means[2]))
                admission_day = admitted.astimezone(CHINA_TZ).date()
                row.update(admission_date=admission_day, admission_department_id=target_department.id)
                beds[(target_department.id, admission_day)] += 1
                if 0.05 <= fate < 0.08:
                    row.update(status="expired", closed_at=datetime.combine(admission_day, datetime.min.time(),
                                                                             CHINA_TZ) + timedelta(days=2))
                    beds[(target_department.id, admission_day)] -= 1  # the bed is freed
                else:
                    row.update(admitted_at=admitted, wait_bed_s=int((admitted - decided).total_seconds()),
                               wait_total_s=int((admitted - submitted).total_seconds()),
                               closed_at=admitted + timedelta(days=rng.uniform(3, 12)))
        rid = referral_id
        referral_id += 1
        batch_referrals.append((
            rid, writer.public_id(ids), submitted, row["closed_at"] or submitted, f"{CODE_PREFIX}{rid:010d}", 0,
            row["status"], direction, urgency, needs_source, patient_id, rng.choice(source.doctors),
            source.institution.id, rng.choice(source.departments).id, target.institution.id, target_department.id,
            "{}", "", patient_name, submitted, row["stage_started_at"], row["decided_at"], row["admitted_at"],
            row["closed_at"], row["admission_date"], row["admission_department_id"], "", "",
            row["rejection_code"], "", "{}", "none", "", "", submitted_day, month_of(submitted_day),
            row["source_approved_at"], row["wait_source_s"], row["wait_target_s"], row["wait_bed_s"],
            row["wait_total_s"], row["redirects"], row["decisions"], row["late_decisions"], False))
        counts[row["status"]] += 1
        occasions = []
        if row["admitted_at"] is not None:
            occasions.append(("admitted", "patient", None, row["admitted_at"]))
            occasions += [("completed", "patient", None, row["closed_at"]),
                          ("referrer", "doctor", rng.choice(source.doctors), row["closed_at"]),
                          ("receiver", "doctor", rng.choice(target.doctors), row["closed_at"])]
        for occasion, respondent, staff_id, invited_at in occasions:
            day = invited_at.astimezone(CHINA_TZ).date()
            answered = rng.random() < ANSWER_RATE[respondent]
            answered_at = invited_at + timedelta(hours=rng.uniform(1, 72)) if answered else None
            iid = invitation_id
            invitation_id += 1
            scores, satisfied = [None] * 8, None
            if answered:
                weights = SCORE_WEIGHTS[respondent]
                scores = [rng.choices((1, 2, 3, 4, 5), weights=weights)[0] for _ in range(form_items[respondent])]
                scores += [None] * (8 - len(scores))
                satisfied = scores[0] >= 4
                batch_responses.append((response_id, iid, forms[respondent].id, *scores, satisfied, "", None,
                                        answered_at))
                response_id += 1
                counts["answers"] += 1
            batch_invitations.append((
                iid, writer.public_id(ids), invited_at, answered_at or invited_at, forms[respondent].id, rid, occasion,
                respondent, patient_id if respondent == "patient" else None, staff_id, direction,
                source.institution.id, target.institution.id, None, target_department.id, day, month_of(day),
                answered_at, satisfied, *scores))
            counts["invitations"] += 1
        if len(batch_referrals) >= BATCH:
            await flush()
            if progress:
                progress(f"已生成 {index + 1}/{referrals} 张转诊单（{time.monotonic() - started:.0f} 秒）")
    await flush()
    await _beds(writer, beds)
    for table in ("referral", "survey_invitation", "survey_response"):
        await writer.fix_sequence(table)
    for table in (rollup.REFERRALS, rollup.SURVEYS):
        await rollup.rebuild(table)  # one statement over the rows just written
    counts["referrals"] = sum(counts[s] for s in ("completed", "rejected", "cancelled", "expired"))
    counts["seconds"] = round(time.monotonic() - started, 1)
    if progress:
        progress(f"完成：{counts['referrals']} 张转诊单，{counts['invitations']} 份问卷邀请，"
                 f"{counts['answers']} 份答卷，用时 {counts['seconds']} 秒")
    return dict(counts)


async def _beds(writer: Writer, beds: Counter) -> None:
    """Each admission day's reserved beds: what was booked, and a little more published (about 80 % used)."""
    rng = random.Random(7)
    existing = {(r.department_id, r.day) for r in  # type: ignore[attr-defined]
                await CapacityDay.filter(department_id__in=list({d for d, _ in beds}))}
    rows = [(department_id, day, booked + rng.randint(0, max(1, booked // 3)), booked)
            for (department_id, day), booked in beds.items() if (department_id, day) not in existing]
    for start in range(0, len(rows), BATCH):
        await writer.write("capacity_day", ("department_id", "day", "capacity", "booked"), rows[start:start + BATCH])

