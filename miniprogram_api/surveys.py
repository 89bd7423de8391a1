"""Satisfaction surveys: a person's pending invitations, one questionnaire, its one answer; the consortium
office edits the questionnaires (each edit is a new version)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from accounts.principal import authenticate
from errors import NotFound
from miniprogram_api.directory import path_uuid
from miniprogram_api.routing import Api, json_response, parse_body
from models import Role
from models.surveys import MAX_ITEMS
from surveys import answers, forms

api = Api()
TAGS = ["surveys"]


class ScaleOption(BaseModel):
    value: int
    text: str


class FormItem(BaseModel):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    text: str = Field(min_length=1, max_length=100)


class FormOut(BaseModel):
    respondent: str
    version: int
    title: str
    intro: str
    items: list[FormItem]
    comment_prompt: str
    scale: list[ScaleOption]


class SurveyReferral(BaseModel):
    id: str
    code: str
    patient: str = Field(description="姓名已脱敏")
    source: str
    target: str


class SurveyOut(BaseModel):
    id: str
    occasion: str = Field(description="admitted（入院后）、completed（完成后）、referrer、receiver")
    occasion_name: str
    respondent: str
    referral: SurveyReferral
    invited_on: str
    answered: bool
    form: FormOut | None = None


class SurveyList(BaseModel):
    items: list[SurveyOut]
    next_cursor: str | None = None


class AnswerIn(BaseModel):
    scores: dict[str, int] = Field(description="每个评分项的 key → 1 至 5 分", max_length=MAX_ITEMS)
    comment: str = Field(default="", max_length=500)


class AnswerOut(BaseModel):
    id: str
    satisfied: bool
    message: str


class FormIn(BaseModel):
    title: str = Field(min_length=1, max_length=100)
    intro: str = Field(default="", max_length=300)
    items: list[FormItem] = Field(min_length=1, max_length=MAX_ITEMS,
                                  description="第一项须为总体满意度，key 为 overall")
    comment_prompt: str = Field(default="", max_length=100)


class FormsOut(BaseModel):
    items: list[FormOut]


@api.route("GET", "/api/v1/surveys/pending", summary="我待填写的满意度问卷", tags=TAGS, response=SurveyList,
           responses={403: "未绑定身份"})
async def pending(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    rows = await answers.pending(principal)
    return json_response(SurveyList.model_validate(
        {"items": [await answers.invitation_view(r, with_form=False) for r in rows], "next_cursor": None}))


@api.route("GET", "/api/v1/surveys/{id}", summary="一份问卷（仅限被邀请人）", tags=TAGS, response=SurveyOut,
           responses={404: "问卷不存在或不是邀请您的"})
async def get_survey(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    invitation = await answers.own_invitation(principal, path_uuid(request))
    return json_response(SurveyOut.model_validate(await answers.invitation_view(invitation)))


@api.route("POST", "/api/v1/surveys/{id}/responses", summary="提交问卷（每份邀请只能提交一次）", tags=TAGS,
           body=AnswerIn, response=AnswerOut, status=201,
           responses={404: "问卷不存在或不是邀请您的", 409: "已提交过", 422: "评分缺项或超出 1-5"})
async def post_response(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await parse_body(request, AnswerIn)
    response = await answers.answer(principal, path_uuid(request), body.scores, body.comment)
    return json_response(AnswerOut(id=str(response.id), satisfied=response.satisfied,
                                   message="感谢您的评价！"), status=201)


@api.route("GET", "/api/v1/admin/surveys", summary="当前问卷（患者、医生）", tags=["admin"], response=FormsOut,
           responses={403: "仅限医联体办公室"})
async def get_forms(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    principal.require_role(Role.CONSORTIUM_ADMIN)
    return json_response(FormsOut.model_validate(
        {"items": [forms.form_view(await forms.current_form(r)) for r in forms.RESPONDENTS]}))


@api.route("PUT", "/api/v1/admin/surveys/{respondent}", summary="修改问卷（保存为新版本，已有答卷不受影响）",
           tags=["admin"], body=FormIn, response=FormOut,
           responses={403: "仅限医联体办公室", 404: "respondent 只能是 patient 或 doctor", 422: "问卷内容有误"})
async def put_form(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    principal.require_role(Role.CONSORTIUM_ADMIN)
    respondent = request.match_info["respondent"]
    if respondent not in forms.RESPONDENTS:
        raise NotFound("问卷对象只能是 patient 或 doctor", code="SURVEY_FORM_NOT_FOUND")
    body = await parse_body(request, FormIn)
    form = await forms.new_version(respondent, forms.FormIn(
        title=body.title, intro=body.intro, items=[i.model_dump() for i in body.items],
        comment_prompt=body.comment_prompt), principal.staff_id)
    return json_response(FormOut.model_validate(forms.form_view(form)))
