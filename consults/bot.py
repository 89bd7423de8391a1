"""The chat bot's 会诊 command: the sender's open consultations (asked, accepted or invited to), each with its
state and the messages they have not read in its conversation."""

from __future__ import annotations

from accounts.principal import Principal
from consults.queries import open_for
from consults.state_machine import STATUS_NAMES, Status
from directory import cache
from models import Conversation, ConversationParticipant
from models.chat import ConversationKind
from security.masking import mask_name

MAX_ITEMS = 8


def consultation_page(public_id: object) -> str:
    return f"pages/consultation/detail?id={public_id}"


async def unread_counts(staff_id: int, subject_ids: list) -> dict[str, int]:
    """Unread messages per consultation (by public id): the conversation's last seq minus what the staff member
    read; nothing for a conversation they do not take part in."""
    conversations = await Conversation.filter(kind=ConversationKind.CONSULTATION, subject_id__in=subject_ids)
    read = {p.conversation_id: p.last_read_seq for p in await ConversationParticipant.filter(  # type: ignore[attr-defined]
        conversation_id__in=[c.id for c in conversations], staff_id=staff_id, left_at=None)}
    return {str(c.subject_id): max(c.last_seq - read[c.id], 0) for c in conversations if c.id in read}


async def my_consultations(principal: Principal, links) -> str:
    if principal.staff_id is None:
        return "“会诊”供医务人员使用。发送“我的转诊”查看您的转诊。"
    rows = await open_for(principal)
    if not rows:
        return "您目前没有未结束的会诊。"
    unread = await unread_counts(principal.staff_id, [c.public_id for c in rows])
    shown = rows[:MAX_ITEMS]
    lines = [f"您未结束的会诊 {len(rows)} 条" + (f"（最近 {len(shown)} 条）：" if len(rows) > len(shown) else "：")]
    for n, consultation in enumerate(shown, start=1):
        source = await cache.institution(consultation.requester_institution_id)  # type: ignore[attr-defined]
        department = await cache.department(consultation.target_department_id)  # type: ignore[attr-defined]
        count = unread.get(str(consultation.public_id), 0)
        lines.append(f"{n}. {links.page(consultation_page(consultation.public_id), consultation.code)} "
                     f"{mask_name(consultation.patient_name)} {source.short_name or source.name}→{department.name} "
                     f"{STATUS_NAMES[Status(consultation.status)]}" + (f"，未读 {count} 条" if count else ""))
    lines.append("点击编号打开小程序查看和讨论。")
    return "\n".join(lines)
