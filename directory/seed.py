"""The demo consortium, modelled on the paper's "1 + 2 + N" group: one tertiary hospital, two county
hospitals and four community/township centres, each with departments and one person in every role, each
bound to a WeChat-sandbox openid. Seeding is idempotent."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from his.simulator.launch import demo_launch_public_key_pem
from models import Department, Institution, Level, Role, Staff, WeChatAccount
from settings import Settings

INSTITUTIONS = [
    ("SUBEI", "江苏省苏北人民医院", "苏北医院", Level.TERTIARY, "扬州市"),
    ("GAOYOU", "高邮市人民医院", "高邮人医", Level.COUNTY, "扬州市高邮市"),
    ("BAOYING", "宝应县人民医院", "宝应人医", Level.COUNTY, "扬州市宝应县"),
    ("DONGGUAN", "扬州市东关街道社区卫生服务中心", "东关社区", Level.PRIMARY, "扬州市广陵区"),
    ("WENHE", "扬州市文河社区卫生服务中心", "文河社区", Level.PRIMARY, "扬州市广陵区"),
    ("TANGWANG", "扬州市汤汪乡卫生院", "汤汪卫生院", Level.PRIMARY, "扬州市广陵区"),
    ("SANWAN", "扬州市三湾社区卫生服务中心", "三湾社区", Level.PRIMARY, "扬州市邗江区"),
]

DEPARTMENTS = {
    Level.TERTIARY: [("CARD", "心血管内科", "心内科病区"), ("NEUR", "神经内科", "神经内科病区"),
                     ("RESP", "呼吸与危重症医学科", "呼吸科病区"), ("GSUR", "普通外科", "普外科病区"),
                     ("ORTH", "骨科", "骨科病区"), ("ENDO", "内分泌科", "内分泌科病区"),
                     ("REHA", "康复医学科", "康复病区")],
    Level.COUNTY: [("MED", "内科", "内科病区"), ("SURG", "外科", "外科病区"), ("REHA", "康复科", "康复病区")],
    Level.PRIMARY: [("GP", "全科医学科", "全科病房"), ("REHA", "康复科", "康复病房")],
}

# (role, surname pool index, given name, title); the surname rotates per institution so names differ.
PEOPLE = [
    (Role.DOCTOR, "建国", "主治医师"),
    (Role.APPROVER, "秀英", "医务科科长"),
    (Role.ADMISSION_CLERK, "丽娟", "住院处收费员"),
    (Role.EXPERT, "志强", "主任医师"),
    (Role.ADMIN, "海燕", "信息科科长"),
]
SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "赵"]
# The consortium office (医联体办公室) sits in the lead hospital: it sees every institution's figures.
CONSORTIUM_OFFICE = (INSTITUTIONS[0][0], Role.CONSORTIUM_ADMIN, "周文静", "医联体办公室主任")


def demo_openid(institution_code: str, role: str) -> str:
    return f"demo_{institution_code.lower()}_{role}"


async def seed_demo(settings: Settings | None = None) -> bool:
    """Write the demo consortium unless it is there; returns whether anything was written."""
    if await Institution.filter(code=INSTITUTIONS[0][0]).exists():
        return False
    async with in_transaction():
        for index, (code, name, short, level, region) in enumerate(INSTITUTIONS):
            institution = await Institution.create(code=code, name=name, short_name=short, level=level,
                                                   region=region, phone=f"0514-8{index:03d}0000",
                                                   launch_public_key=demo_launch_public_key_pem(code))
            departments = [await Department.create(institution=institution, code=d_code, name=d_name, ward=ward)
                           for d_code, d_name, ward in DEPARTMENTS[level]]
            surname = SURNAMES[index % len(SURNAMES)]
            for seq, (role, given, title) in enumerate(PEOPLE):
                staff = await Staff.create(institution=institution, department=departments[seq % len(departments)],
                                           name=surname + given, title=title, roles=[role.value],
                                           his_user_id=f"{role.value.upper()}{seq + 1:03d}")
                await WeChatAccount.create(openid=demo_openid(code, role.value), staff=staff)
        code, role, name, title = CONSORTIUM_OFFICE
        lead = await Institution.get(code=code)
        office = await Staff.create(institution=lead, name=name, title=title, roles=[role.value],
                                    his_user_id="OFFICE001")
        await WeChatAccount.create(openid=demo_openid(code, role.value), staff=office)
    return True


async def demo_accounts() -> list[dict]:
    """The seeded staff with their sandbox openids (what `python app.py demo-accounts --json` prints)."""
    rows = []
    accounts = await WeChatAccount.filter(openid__startswith="demo_", staff_id__not_isnull=True) \
        .prefetch_related("staff__institution", "staff__department").order_by("id")
    for account in accounts:
        staff = account.staff
        rows.append({"name": staff.name, "roles": list(staff.roles), "institution_code": staff.institution.code,
                     "institution": staff.institution.name,
                     "department": staff.department.name if staff.department else None,
                     "openid": account.openid})
    return rows
