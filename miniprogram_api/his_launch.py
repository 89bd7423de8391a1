"""Single sign-on from a member's HIS: POST /api/v1/auth/his-launch {launch_token} → the same session as
wx-login (see his.launch for the checks), plus the patient the HIS had open, if it named one."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from accounts.sessions import issue_session
from appkeys import KV_STORE, SETTINGS
from his.launch import MAX_TOKEN, redeem_launch_token
from miniprogram_api.routing import Api, json_response, parse_body
from miniprogram_api.schemas import SessionOut

api = Api()


class HisLaunchIn(BaseModel):
    launch_token: str = Field(min_length=1, max_length=MAX_TOKEN,
                              description="机构 HIS 签发的一次性登录 JWT（iss=机构代码，sub=HIS 工号）")


class LaunchContext(BaseModel):
    institution_code: str
    patient: str | None = Field(default=None, description="HIS 当前打开的患者（病历号或就诊卡号），可直接用于 /scan")


class HisLaunchOut(SessionOut):
    context: LaunchContext


@api.route("POST", "/api/v1/auth/his-launch", summary="从 HIS 单点登录（一次性登录凭证）", tags=["auth"], auth=False,
           body=HisLaunchIn, response=HisLaunchOut,
           responses={401: "凭证无效：签名错误、已过期、已使用、机构或用户未知（error.code 说明原因）"})
async def his_launch(request: web.Request) -> web.Response:
    body = await parse_body(request, HisLaunchIn)
    launch = await redeem_launch_token(request.app[KV_STORE], body.launch_token)
    session = await issue_session(request.app[SETTINGS], launch.account)
    session["context"] = {"institution_code": launch.institution.code, "patient": launch.patient}
    return json_response(session)
