"""Chat commands, answered in Chinese: 帮助, 我的转诊, 待审批, 查询 <编号>, 评价. Each takes the sender (a Principal, or
None for someone we do not know) and returns the reply text; links open the mini-program's pages.

What a reply shows follows the API's rules: a patient sees their own referrals, an approver their
institution's queue, and `查询` answers only for referrals the sender may see (`referrals.access.can_view`),
"not found" otherwise. Patient names are masked; nothing carries an ID or phone number."""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

from accounts.principal import Principal
from directory import cache
from errors import DomainError
from models import Department, Institution, Referral
from models.referrals import Urgency
from notifications.rules import stage_deadline
from notifications.templates import detail_page, format_date, slip_page
from referrals.access import can_view
from referrals.clinical import REJECTION_REASONS
from referrals.policy import what_to_bring
from referrals.queries import box_query
from referrals.state_machine import DIRECTION_NAMES, STATUS_NAMES, Status
from security.masking import mask_name
from surveys.answers import invitation_view, pending
from surveys.invitations import survey_page
from timeutil import china_time, utcnow

MAX_ITEMS = 8
CODE = re.compile(r"[A-Z0-9]{4,20}")

HELP = ("您好，这里是医联体双向转诊平台。可发送以下指令：\n"
        "· 我的转诊 —— 查看本人及家属的转诊进度和下一步\n"
        "· 待审批 —— 审批人员查看本机构待审批的转诊\n"
        "· 查询 转诊编号 —— 例如“查询 ZZ261126K7QM”\n"
        "· 评价 —— 查看待填写的满意度问卷\n"
        "· 帮助 —— 显示本说明")
BIND = ("您还没有绑定身份，暂时无法查询。\n"
        "· 患者或家属：请打开“双向转诊”小程序，在“我的”页面完成实名绑定；\n"
        "· 医务人员：请使用本机构管理员发给您的邀请完成绑定。\n"
        "绑定后发送“帮助”查看可用指令。")
UNKNOWN = "抱歉，没有识别该指令。\n\n" + HELP
NOT_TEXT = "目前只能处理文字指令。发送“帮助”查看可用指令。"


@dataclass(frozen=True)
class Links:
    """How to write a link that opens a mini-program page inside a customer-service text message."""

    appid: str
    fallback_url: str

    def page(self, path: str, text: str) -> str:
        return (f'<a href="{html.escape(self.fallback_url)}" data-miniprogram-appid="{html.escape(self.appid)}" '
                f'data-miniprogram-path="{html.escape(path)}">{html.escape(text)}</a>')


def normalise(text: str) -> str:
    """Full-width letters and spaces folded, runs of spaces collapsed: “查询　zz2611…” reads as “查询 ZZ2611…”."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


async def reply(principal: Principal | None, text: str, links: Links) -> str:
    command = normalise(text)
    if principal is None or principal.kind == "unbound":
        return BIND
    if command in ("帮助", "help", "HELP", "?", "菜单"):
        return HELP
    if command == "我的转诊":
        return await my_referrals(principal, links)
    if command == "待审批":
        return await approval_queue(principal, links)
    if command.startswith("查询"):
        return await lookup(principal, command[2:].strip(), links)
    if command in ("评价", "满意度", "问卷"):
        return await surveys_pending(principal, links)
    return UNKNOWN


async def _names(referral: Referral) -> tuple[Institution, Institution, Department]:
    return (await cache.institution(referral.source_institution_id),  # type: ignore[attr-defined]
            await cache.institution(referral.target_institution_id),  # type: ignore[attr-defined]
            await cache.department(referral.admission_department_id  # type: ignore[attr-defined]
                                   or referral.target_department_id))  # type: ignore[attr-defined]


def _short(institution: Institution) -> str:
    return institution.short_name or institution.name


async def next_step(referral: Referral) -> str:
    """What happens next, in the patient's words."""
    source, target, department = await _names(referral)
    status = referral.status
    if status == Status.PENDING_SOURCE:
        return f"等待{_short(source)}审批，结果会通过消息通知您"
    if status == Status.PENDING_TARGET:
        return f"等待{_short(target)}审批，结果会通过消息通知您"
    if status == Status.SCHEDULED:
        day = format_date(referral.admission_date) if referral.admission_date else "预约日期"
        ward = f" {referral.ward}" if referral.ward else ""
        return f"请于{day}到{target.name}{department.name}{ward}办理入院，携带{await what_to_bring(target.id)}"
    if status == Status.ADMITTED:
        return f"已在{_short(target)}住院治疗"
    if status == Status.COMPLETED:
        return "转诊已完成，出院（回转）小结已回传给转诊医生"
    if status == Status.REJECTED:
        reason = REJECTION_REASONS.get(referral.rejection_code, "")
        return f"转诊未通过{('（' + reason + '）') if reason else ''}，如有疑问请联系转诊医生"
    if status == Status.CANCELLED:
        return "转诊已取消，如有疑问请联系转诊医生"
    if status == Status.EXPIRED:
        return "逾期未到院，入院预约已失效，请联系转诊医生"
    return STATUS_NAMES[status]


async def my_referrals(principal: Principal, links: Links) -> str:
    if not principal.patient_ids:
        return "“我的转诊”供患者及家属使用。医务人员可发送“待审批”或“查询 转诊编号”。"
    rows = await (Referral.filter(patient_id__in=list(principal.patient_ids)).exclude(status=Status.DRAFT)
                  .order_by("-id").limit(MAX_ITEMS))
    if not rows:
        return "您目前没有转诊记录。"
    lines = [f"您的转诊（最近 {len(rows)} 条）："]
    for n, referral in enumerate(rows, start=1):
        source, target, _ = await _names(referral)
        page = slip_page(referral.public_id) if referral.status == Status.SCHEDULED else detail_page(referral.public_id)
        lines.append(f"{n}. {links.page(page, referral.code)} {mask_name(referral.patient_name)} "
                     f"{_short(source)}→{_short(target)}\n   状态：{STATUS_NAMES[referral.status]}\n"
                     f"   下一步：{await next_step(referral)}")
    return "\n".join(lines)


def _remaining(due) -> str:
    if due is None:
        return ""
    hours = (due - utcnow()).total_seconds() / 3600
    if hours < 0:
        return "，已超时"
    return f"，剩余 {hours:.0f} 小时" if hours >= 1 else "，不足 1 小时"


async def approval_queue(principal: Principal, links: Links) -> str:
    try:
        query = await box_query(principal, "to_approve")
    except DomainError:
        return "“待审批”供审批人员使用。" + ("发送“我的转诊”查看您的转诊。" if principal.patient_ids else "")
    total = await query.count()
    if not total:
        return "本机构目前没有待审批的转诊。"
    rows = await query.order_by("stage_started_at", "id").limit(MAX_ITEMS)
    lines = [f"本机构待审批转诊 {total} 条" + (f"（最早的 {len(rows)} 条）：" if total > len(rows) else "：")]
    for n, referral in enumerate(rows, start=1):
        source, target, department = await _names(referral)
        where = f"来自{_short(source)}" if referral.status == Status.PENDING_TARGET else f"转往{_short(target)}"
        urgency = Urgency.NAMES.get(referral.urgency, "")
        lines.append(f"{n}. {links.page(detail_page(referral.public_id), referral.code)} "
                     f"{mask_name(referral.patient_name)} {urgency} {where}{department.name}"
                     f"{_remaining(await stage_deadline(referral))}")
    lines.append("点击编号打开小程序审批。")
    return "\n".join(lines)


async def lookup(principal: Principal, argument: str, links: Links) -> str:
    code = argument.replace(" ", "").upper()
    if not code:
        return "请在“查询”后写上转诊编号，例如“查询 ZZ261126K7QM”。"
    if not CODE.fullmatch(code):
        return "转诊编号只包含字母和数字，例如“查询 ZZ261126K7QM”。"
    referral = await Referral.get_or_none(code=code)
    if referral is None or not can_view(principal, referral) or (
            referral.status == Status.DRAFT and principal.staff_id is None):
        return f"未找到编号为 {code} 的转诊单，或您无权查看。"
    source, target, department = await _names(referral)
    lines = [f"转诊单 {links.page(detail_page(referral.public_id), referral.code)}",
             f"患者：{mask_name(referral.patient_name)}",
             f"方向：{DIRECTION_NAMES[referral.direction]}（{source.name} → {target.name} {department.name}）",
             f"状态：{STATUS_NAMES[referral.status]}"]
    if referral.submitted_at:
        lines.append(f"提交时间：{china_time(referral.submitted_at):%Y-%m-%d %H:%M}")
    if referral.admission_date and referral.status in (Status.SCHEDULED, Status.ADMITTED):
        lines.append(f"入院日期：{format_date(referral.admission_date)}")
    if principal.staff_id is None:
        lines.append(f"下一步：{await next_step(referral)}")
    else:
        due = await stage_deadline(referral)
        if due is not None:
            lines.append(f"审批时限：{china_time(due):%Y-%m-%d %H:%M}{_remaining(due)}")
    return "\n".join(lines)


async def surveys_pending(principal: Principal, links: Links) -> str:
    """The sender's survey invitations still open, each a link to the questionnaire."""
    rows = (await pending(principal))[:MAX_ITEMS]
    if not rows:
        return "您目前没有待填写的满意度问卷，感谢您的支持！"
    lines = [f"您有 {len(rows)} 份待填写的满意度问卷（每份约一分钟）："]
    for n, invitation in enumerate(rows, start=1):
        view = await invitation_view(invitation, with_form=False)
        referral = view["referral"]
        lines.append(f"{n}. {links.page(survey_page(invitation.public_id), referral['code'])} "
                     f"{referral['patient']} {view['occasion_name']}评价（{referral['target']}）")
    lines.append("点击编号打开小程序填写。")
    return "\n".join(lines)
