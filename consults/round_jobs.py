"""Ward-round reminders (outbox timers, registered on import by consults.setup): the participants half an hour
before a round; the local participants and the task's author on a follow-up task's due date."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from appkeys import SETTINGS
from consults.notices import staff_accounts
from consults.round_machine import RoundStatus
from consults.rounds import TIMER_KIND, members_of
from directory import cache
from models import Patient, Staff, WardRound, WardRoundItem
from notifications.fanout import publish_all
from notifications.rules import Notice
from notifications.templates import PROGRESS
from outbox.registry import JobContext, handler
from security.masking import mask_name
from timeutil import utcnow


def round_page(public_id: object) -> str:
    return f"pages/ward-round/detail?id={public_id}"


@handler(TIMER_KIND)
async def round_timer(ctx: JobContext) -> None:
    payload = ctx.job.payload
    ward_round = await WardRound.get_or_none(id=payload["round_id"])
    if ward_round is None or ward_round.status == RoundStatus.CANCELLED:
        return
    patient = mask_name((await Patient.get(id=ward_round.patient_id)).name)  # type: ignore[attr-defined]
    remote = await cache.institution(ward_round.remote_institution_id)  # type: ignore[attr-defined]
    members = await members_of(ward_round)
    if payload["timer"] == "start":
        if ward_round.status != RoundStatus.SCHEDULED:
            return
        result, note, staff_ids = "即将查房", "远程查房将于30分钟后开始", members
        key = f"round:{ward_round.id}:start"
    else:
        item = await WardRoundItem.get_or_none(id=payload["item_id"])
        if item is None:
            return
        local = await Staff.filter(id__in=members, institution_id=ward_round.local_institution_id)  # type: ignore[attr-defined]
        result, note = "随访到期", f"随访任务{item.n}：{item.text}"
        staff_ids = [s.id for s in local] + ([item.author_id] if item.author_id else [])  # type: ignore[attr-defined]
        key = f"round:{ward_round.id}:task:{item.n}"
    notice = Notice(kind="ward_round_reminder", template=PROGRESS.key, page=round_page(ward_round.public_id),
                    title=f"远程查房{result}",
                    values={"character_string1": ward_round.code, "thing2": patient, "phrase3": result,
                            "thing4": remote.name, "thing5": note, "time6": ward_round.scheduled_at
                            if payload["timer"] == "start" else utcnow()},
                    body=f"远程查房 {ward_round.code}（患者 {patient}）{result}：{note}")
    notice.accounts = await staff_accounts(sorted(set(staff_ids)))
    async with in_transaction():
        await publish_all([notice], None, key, settings=ctx.app[SETTINGS])
