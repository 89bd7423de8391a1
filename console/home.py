"""The console's first page: a tile per section the staff member's roles open, with open counts."""

from __future__ import annotations

from aiohttp import web

from console.page import PREFIX, render, user_of
from models import Role
from referrals.queries import badge_counts

routes = web.RouteTableDef()

TILES = [
    ("/referrals?box=to_approve", "待审批", "审批转入、转出的转诊单", (Role.APPROVER,)),
    ("/referrals?box=incoming", "转入", "转入本院的转诊单与入院安排",
     (Role.DOCTOR, Role.APPROVER, Role.EXPERT, Role.ADMISSION_CLERK, Role.ADMIN)),
    ("/referrals?box=outgoing", "转出", "本院发起的转诊单", (Role.DOCTOR, Role.APPROVER, Role.EXPERT, Role.ADMIN)),
    ("/consultations", "会诊", "云会诊：待我接诊、我参与的、我发起的", (Role.DOCTOR, Role.EXPERT, Role.APPROVER)),
    ("/desk", "住院处", "今日、明日预约入院，扫码办理入院", (Role.ADMISSION_CLERK,)),
    ("/admin/beds", "预留床位", "按月查看、发布各科室每日预留转诊床位", (Role.ADMIN, Role.APPROVER)),
    ("/stats", "统计", "表1 等待时长、各阶段、表2 满意度，图表与导出", (Role.ADMIN, Role.CONSORTIUM_ADMIN)),
    ("/admin/staff", "人员与邀请", "角色、科室、停用；邀请新同事", (Role.ADMIN,)),
    ("/admin/departments", "科室", "新增、修改、停用科室", (Role.ADMIN,)),
    ("/admin/policy", "转诊策略", "审批环节、时限、入院携带材料", (Role.ADMIN,)),
    ("/admin/jobs", "后台任务", "失败的通知与 HIS 任务，重试", (Role.ADMIN,)),
    ("/admin/audit", "审计日志", "按条件查询，校验哈希链", (Role.ADMIN,)),
]


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    user = user_of(request)
    counts = await badge_counts(user.principal)
    tiles = [(PREFIX + href, label, text) for href, label, text, roles in TILES if user.has(*roles)]
    by_href = {PREFIX + f"/referrals?box={box}": n for box, n in counts.items()}
    return render(request, "home.html", tiles=tiles, counts=by_href)
