"""`python app.py jobs [--dead] [--retry ID | --retry-all-dead | --purge-done [--older-than DAYS]] [--json]`:
the operator's view of the outbox."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

import db
from errors import DomainError
from kv import connect as connect_kv
from models import OutboxJob
from outbox import admin
from outbox.wakeup import CHANNEL
from settings import Settings
from timeutil import china_time, json_default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dead", action="store_true", help="list the dead jobs with their last error")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--retry", type=int, metavar="ID", help="send one dead job round again")
    action.add_argument("--retry-all-dead", action="store_true", help="send every dead job round again")
    action.add_argument("--purge-done", action="store_true",
                        help="delete finished jobs (dispatchers also do it hourly, see OUTBOX_KEEP_DONE_DAYS)")
    parser.add_argument("--older-than", type=int, metavar="DAYS", default=None,
                        help="with --purge-done: only jobs finished more than DAYS ago (default OUTBOX_KEEP_DONE_DAYS)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _when(value) -> str:
    return china_time(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


async def run_jobs_command(settings: Settings, args: argparse.Namespace) -> int:
    await db.open_db(settings)
    try:
        return await _run(settings, args)
    finally:
        await db.close_db()


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    if args.purge_done:
        days = settings.outbox_keep_done_days if args.older_than is None else args.older_than
        if days < 0:
            print("--older-than 应为不小于 0 的天数", file=sys.stderr)
            return 2
        removed = await admin.purge_done(timedelta(days=days))
        print(json.dumps({"purged": removed}) if args.json else f"已删除 {removed} 个完成超过 {days} 天的任务")
        return 0
    if args.retry is not None or args.retry_all_dead:
        if args.retry is not None:
            try:
                job = await admin.retry_job(args.retry)
            except DomainError as exc:
                print(exc.message, file=sys.stderr)
                return 1
            result = {"retried": [str(job.id)]}
            message = f"任务 #{job.id}（{job.kind}）已重新排队"
        else:
            count = await admin.retry_all_dead()
            result = {"retried_count": count}
            message = f"已将 {count} 个失败任务重新排队"
        await _wake_workers(settings)
        print(json.dumps(result) if args.json else message)
        return 0
    counts = {state: await OutboxJob.filter(state=state).count() for state in admin.STATES}
    dead = await admin.jobs_query(state="dead").order_by("id") if args.dead or counts["dead"] else []
    referrals = await admin.referrals_of(dead)
    views = [admin.job_view(job, referrals.get(job.payload.get("referral_id"))) for job in dead]
    if args.json:
        print(json.dumps({"counts": counts, "dead": views}, ensure_ascii=False, default=json_default))
        return 0
    print("任务统计: " + " · ".join(f"{state} {counts[state]}" for state in admin.STATES))
    if views and not args.dead:
        print(f"有 {len(views)} 个失败任务，用 --dead 查看，--retry ID 或 --retry-all-dead 重试")
    if args.dead:
        if not views:
            print("没有失败（dead）的任务")
        for view in views:
            referral = f"  转诊单 {view['referral']['code']}" if view["referral"] else ""
            print(f"#{view['id']}  {view['kind']}  尝试 {view['attempts']} 次  更新于 {_when(view['updated_at'])}"
                  f"{referral}\n    {view['last_error'] or '(无错误信息)'}")
    return 0


async def _wake_workers(settings: Settings) -> None:
    """Tell running dispatchers now rather than at their next poll (only reaches them through Redis)."""
    kv = connect_kv(settings.redis_url, settings.redis_prefix)
    try:
        await kv.publish(CHANNEL, "1")
    finally:
        await kv.close()
