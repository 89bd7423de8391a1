"""`python app.py audit-verify`: recompute every referral's and consultation's timeline hash chain and the
audit log's."""

from __future__ import annotations

import db
from models import Consultation, Referral
from referrals.timeline import verify, verify_referral
from security import audit
from settings import Settings


async def run_audit_verify(settings: Settings, out=print) -> int:
    await db.open_db(settings)
    try:
        return await verify_all(out)
    finally:
        await db.close_db()


async def verify_all(out=print) -> int:
    """Exit status 0 when everything verifies, 1 when anything was edited or deleted."""
    broken = 0
    total = await Referral.all().count()
    checked = 0
    last_id = 0
    while batch := await Referral.filter(id__gt=last_id).order_by("id").limit(500):
        for referral in batch:
            result = await verify_referral(referral.id, referral.version)
            checked += 1
            if not result.valid:
                broken += 1
                out(f"转诊单 {referral.code}: 时间线校验失败（{result.reason}）")
        last_id = batch[-1].id
        out(f"已校验 {checked}/{total} 张转诊单")
    broken += await _verify_consultations(out)
    log = await audit.verify()
    if not log.valid:
        out(f"审计日志: 第 {log.broken_at} 条记录校验失败")
    out(f"校验完成：{checked} 张转诊单，{broken} 张异常；审计日志 {log.events} 条，"
        f"{'完整' if log.valid else '已被篡改'}")
    return 0 if broken == 0 and log.valid else 1


async def _verify_consultations(out) -> int:
    """Every consultation's timeline, in batches; returns how many are broken."""
    broken = last_id = 0
    while batch := await Consultation.filter(id__gt=last_id).order_by("id").limit(500):
        for consultation in batch:
            result = await verify(Consultation, consultation.id, consultation.version)
            if not result.valid:
                broken += 1
                out(f"会诊 {consultation.code}: 时间线校验失败（{result.reason}）")
        last_id = batch[-1].id
    return broken
