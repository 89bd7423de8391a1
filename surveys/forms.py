"""Questionnaires: one for patients, one for doctors, each versioned. Version 1 is the default below; the
consortium office edits a questionnaire by writing a new version (answers keep the version they answered)."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from errors import InvalidInput
from models import SurveyForm
from models.surveys import MAX_ITEMS
from security.audit import audited

RESPONDENTS = ("patient", "doctor")
RESPONDENT_NAMES = {"patient": "患者", "doctor": "医生"}
SCALE = {1: "非常不满意", 2: "不满意", 3: "一般", 4: "满意", 5: "非常满意"}
SATISFIED = 4  # 满意 and 非常满意

DEFAULTS = {
    "patient": {
        "title": "转诊服务满意度调查（患者）",
        "intro": "感谢您使用医联体双向转诊服务。请根据本次转诊的亲身感受评分，1 分为非常不满意，5 分为非常满意。",
        "items": [{"key": "overall", "text": "您对本次转诊服务的总体满意度"},
                  {"key": "waiting", "text": "从提出转诊到入院的等待时间"},
                  {"key": "admission", "text": "入院手续是否便捷（无需重复挂号、排队）"},
                  {"key": "information", "text": "转诊进度和入院安排的通知是否及时清楚"},
                  {"key": "care", "text": "两家医院医护人员的沟通和照护衔接"}],
        "comment_prompt": "您还有什么意见或建议？",
    },
    "doctor": {
        "title": "转诊协同满意度调查（医生）",
        "intro": "请就本次转诊在平台上的协同体验评分，1 分为非常不满意，5 分为非常满意。",
        "items": [{"key": "overall", "text": "您对本次转诊协同的总体满意度"},
                  {"key": "approval", "text": "审批和接收的速度"},
                  {"key": "records", "text": "病历资料和检查结果的完整、可用"},
                  {"key": "usability", "text": "小程序操作是否简便"},
                  {"key": "feedback", "text": "转诊结果和回转信息的反馈"}],
        "comment_prompt": "对平台或协同流程的建议",
    },
}


@dataclass
class FormIn:
    title: str
    intro: str
    items: list[dict]
    comment_prompt: str = ""


def check_items(items: list[dict]) -> None:
    keys = [item["key"] for item in items]
    if not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidInput(f"问卷须有 1 至 {MAX_ITEMS} 个评分项", code="INVALID_SURVEY_FORM")
    if len(set(keys)) != len(keys):
        raise InvalidInput("评分项的 key 不能重复", code="INVALID_SURVEY_FORM")
    if keys[0] != "overall":
        raise InvalidInput("第一项须为总体满意度（key 为 overall），满意率按它计算", code="INVALID_SURVEY_FORM")


async def current_form(respondent: str) -> SurveyForm:
    """The newest version of the respondent's questionnaire (version 1 from the defaults when there is none)."""
    form = await SurveyForm.filter(respondent=respondent).order_by("-version").first()
    if form is not None:
        return form
    try:
        async with in_transaction():
            return await SurveyForm.create(respondent=respondent, version=1, **DEFAULTS[respondent])
    except IntegrityError:  # another process wrote version 1 at the same moment
        return await SurveyForm.get(respondent=respondent, version=1)


async def new_version(respondent: str, form: FormIn, staff_id: int | None) -> SurveyForm:
    check_items(form.items)
    current = await current_form(respondent)
    async with audited("admin.survey_form_published", "survey_form", respondent, actor_staff_id=staff_id,
                       institution_id=None) as detail:
        created = await SurveyForm.create(respondent=respondent, version=current.version + 1, title=form.title,
                                          intro=form.intro, items=form.items, comment_prompt=form.comment_prompt,
                                          created_by_staff_id=staff_id)
        detail["version"] = created.version
    return created


def form_view(form: SurveyForm) -> dict:
    return {"respondent": form.respondent, "version": form.version, "title": form.title, "intro": form.intro,
            "items": form.items, "comment_prompt": form.comment_prompt,
            "scale": [{"value": v, "text": t} for v, t in SCALE.items()]}
