"""Who is asked: the patient after admission and after completion, the referring and the receiving doctor
after completion. Invitations are written by the `notify.referral_event` job of the check-in or completion
(one per referral and occasion, so a job that runs twice asks nobody twice), each with an inbox message and a
subscribe message (sent only where the person holds a credit, like every notification)."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from models import Referral, ReferralEvent, SurveyInvitation, WeChatAccount
from notifications import recipients
from notifications.fanout import publish
from notifications.rules import Facts, Notice, short
from notifications.templates import PROGRESS
from settings import Settings
from stats import rollup
from stats.facts import month_of
from surveys.forms import current_form
from timeutil import china_time

# timeline action → [(occasion, respondent)]
OCCASIONS = {
    "check_in": [("admitted", "patient")],
    "complete": [("completed", "patient"), ("referrer", "doctor"), ("receiver", "doctor")],
}
OCCASION_NAMES = {"admitted": "入院后", "completed": "转诊完成后", "referrer": "转诊医生", "receiver": "接收医生"}


def survey_page(public_id: object) -> str:
    return f"pages/survey/index?id={public_id}"


def _respondent_staff(referral: Referral, event: ReferralEvent, occasion: str) -> int | None:
    if occasion == "referrer":
        return referral.referrer_id  # type: ignore[attr-defined]
    if occasion == "receiver":
        return event.actor_staff_id
    return None


def invites_on(event: ReferralEvent) -> bool:
    """Whether `invite_for_event` writes anything for this event (its caller then needs a transaction)."""
    return bool(OCCASIONS.get(event.action))


async def invite_for_event(referral: Referral, event: ReferralEvent, settings: Settings) -> int:
    """Write the invitations this event calls for and tell each person; returns how many were told."""
    occasions = OCCASIONS.get(event.action, [])
    if not occasions:
        return 0
    day = china_time(event.at).date()
    rows = []
    for occasion, respondent in occasions:
        staff_id = _respondent_staff(referral, event, occasion)
        if respondent == "doctor" and staff_id is None:
            continue
        rows.append(SurveyInvitation(
            form_id=(await current_form(respondent)).id, referral_id=referral.id, occasion=occasion,
            respondent=respondent, patient_id=referral.patient_id if respondent == "patient" else None,  # type: ignore[attr-defined]
            staff_id=staff_id, direction=str(referral.direction),
            source_institution_id=referral.source_institution_id,  # type: ignore[attr-defined]
            target_institution_id=referral.target_institution_id,  # type: ignore[attr-defined]
            source_department_id=referral.source_department_id,  # type: ignore[attr-defined]
            target_department_id=referral.target_department_id,  # type: ignore[attr-defined]
            invited_day=day, invited_month=month_of(day)))
    async with in_transaction():
        # Only the invitations not written yet (a job that runs twice asks nobody twice), each counted in Table
        # 2's rollup with its insert. Two runs at once: the unique (referral, occasion) refuses the second
        # insert, its transaction (rollup included) is undone and the job retried.
        written = set(await SurveyInvitation.filter(referral_id=referral.id, occasion__in=[r.occasion for r in rows])
                      .values_list("occasion", flat=True))
        for row in rows:
            if row.occasion not in written:
                await row.save()
                await rollup.move(rollup.SURVEYS, None, rollup.invitation_part(row))
    invitations = await SurveyInvitation.filter(referral_id=referral.id,
                                                occasion__in=[o for o, _ in occasions], answered_at=None)
    facts = await Facts.of(referral)
    told = 0
    for invitation in invitations:
        accounts = (await recipients.patient_accounts(referral) if invitation.respondent == "patient" else
                    list(await WeChatAccount.filter(staff_id=invitation.staff_id).values_list("id", flat=True)))
        notice = Notice(
            kind="survey_invitation", template=PROGRESS.key, page=survey_page(invitation.public_id),
            title="邀请您评价本次转诊服务",
            values={"character_string1": referral.code, "thing2": facts.patient, "phrase3": "邀请评价",
                    "thing4": short(facts.target), "thing5": "请花一分钟评价本次转诊服务", "time6": event.at},
            body=f"转诊单 {referral.code}（患者 {facts.patient}）{OCCASION_NAMES[invitation.occasion]}满意度调查，"
                 "请花一分钟评价本次转诊服务，帮助医联体改进。",
            accounts=accounts)
        # Keyed by the invitation: the event's own notices use the event's key, an account may be in both.
        told += await publish(notice, referral, f"survey:{invitation.id}", settings=settings)
    return told
