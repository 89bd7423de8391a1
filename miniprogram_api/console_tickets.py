"""The mini-program confirms a web-console login: the staff member scanned the QR code on the login page."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from accounts.principal import authenticate
from appkeys import KV_STORE
from console.sessions import confirm_ticket
from miniprogram_api.routing import Api, json_response

api = Api()


class ConfirmedOut(BaseModel):
    confirmed: bool = True
    name: str


@api.route("POST", "/api/v1/console/tickets/{ticket}/confirm", summary="扫码确认登录电脑端管理台（工作人员）",
           tags=["auth"], response=ConfirmedOut,
           responses={403: "仅限在职工作人员",
                      410: "二维码已过期（CONSOLE_TICKET_EXPIRED）或已使用（CONSOLE_TICKET_USED）"})
async def confirm(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    await confirm_ticket(request.app[KV_STORE], principal, request.match_info["ticket"])
    return json_response(ConfirmedOut(name=principal.staff_name))
