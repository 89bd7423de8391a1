"""Referral Cloud: the one app factory and the command line.

    python app.py serve | migrate | seed | seed-history | demo | demo-accounts [--json] | worker | jobs ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator

from aiohttp import web

import db
from appkeys import CIPHER, DB, KV_STORE, SETTINGS, STORAGE
from kv import connect as connect_kv
from security.crypto import PersonalDataCipher
from settings import Settings, SettingsError
from storage import LocalStorage

log = logging.getLogger("referral_cloud")


async def _database(app: web.Application) -> AsyncIterator[None]:
    app[DB] = await db.open_db(app[SETTINGS])
    yield
    await db.close_db()


async def _kv_store(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[KV_STORE] = connect_kv(settings.redis_url, settings.redis_prefix)
    yield
    await app[KV_STORE].close()


def create_app(settings: Settings) -> web.Application:
    """Build the whole application: middlewares, resources (one cleanup_ctx each) and routes."""
    import bot
    import console
    import his
    import miniprogram_api
    import notifications
    import outbox
    import wechat
    from directory import cache as directory_cache
    from metrics import Metrics
    from miniprogram_api.middleware import error_middleware, metrics_middleware

    app = web.Application(
        middlewares=[metrics_middleware, error_middleware],
        client_max_size=settings.max_body,
    )
    app[SETTINGS] = settings
    app[CIPHER] = PersonalDataCipher(settings.data_key, settings.lookup_key)
    app[STORAGE] = LocalStorage(settings.data_dir / "files")
    from appkeys import METRICS

    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_kv_store)
    app.cleanup_ctx.append(directory_cache.sync)
    wechat.setup(app)
    notifications.setup(app)
    his.setup(app)
    bot.setup(app)
    outbox.setup(app)  # after the database, KV, WeChat and HIS: its dispatcher stops first
    miniprogram_api.setup(app)
    console.setup(app)
    return app


def configure_logging(settings: Settings) -> None:
    from security.redaction import RedactingFilter

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


async def _seed(settings: Settings, *, quiet: bool = False) -> None:
    from directory.seed import seed_demo
    from stats.demo import seed_demo_history

    await db.open_db(settings)
    try:
        created = await seed_demo(settings)
        if created:
            # A few months of generated history, so that a newcomer sees figures rather than empty tables.
            await seed_demo_history(PersonalDataCipher(settings.data_key, settings.lookup_key))
    finally:
        await db.close_db()
    if not quiet:
        print("已写入演示医联体（含数月转诊历史）" if created else "演示医联体已存在，未重复写入")


async def _seed_history(settings: Settings, args: argparse.Namespace) -> int:
    from errors import DomainError
    from stats.history import generate

    await db.open_db(settings)
    try:
        await generate(PersonalDataCipher(settings.data_key, settings.lookup_key), referrals=args.referrals,
                       years=args.years, force=args.force, progress=print)
    except DomainError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    finally:
        await db.close_db()
    return 0


async def _demo_accounts(settings: Settings) -> list[dict]:
    from directory.seed import demo_accounts

    await db.open_db(settings)
    try:
        return await demo_accounts()
    finally:
        await db.close_db()


def _print_banner(settings: Settings, accounts: list[dict]) -> None:
    base = f"http://{settings.host}:{settings.port}"
    print(f"\n双向转诊云平台 已启动: {base}")
    print(f"  API 文档 (OpenAPI):  {base}/api/v1/openapi.json")
    print(f"  健康检查:            {base}/healthz  {base}/readyz")
    print(f"  微信沙箱:            {base}/wechat-sandbox/sandbox/messages")
    print(f"  HIS 模拟器:          {base}/his-sim/<机构代码>/fhir/metadata")
    if accounts:
        print("\n演示账号 (POST /wechat-sandbox/sandbox/login-code {\"openid\": ...} 取登录 code):")
        for a in accounts:
            print(f"  {a['institution_code']:<8} {a['name']:<6} {','.join(a['roles']):<40} {a['openid']}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description="双向转诊云平台")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the platform")
    serve.add_argument("--migrate", action="store_true", help="apply migrations first")
    serve.add_argument("--seed", action="store_true", help="seed the demo consortium first")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("seed", help="seed the demo consortium (idempotent)")
    history = sub.add_parser("seed-history", help="generate a realistic referral history for the figures")
    history.add_argument("--referrals", type=int, default=100_000, help="how many referrals (default 100000)")
    history.add_argument("--years", type=float, default=2.0, help="over how many years before now (default 2)")
    history.add_argument("--force", action="store_true", help="even when the database holds real referrals")
    accounts = sub.add_parser("demo-accounts", help="list the seeded demo staff")
    accounts.add_argument("--json", action="store_true")
    sub.add_parser("worker", help="run background jobs without serving HTTP")
    jobs = sub.add_parser("jobs", help="list outbox jobs; retry dead ones")
    from outbox.cli import add_arguments as add_job_arguments

    add_job_arguments(jobs)
    sub.add_parser("audit-verify", help="check every referral timeline and the audit log for tampering")
    sub.add_parser("demo", help="walk the paper's referral flow against the running platform")
    slip_keys = sub.add_parser("slip-keys", help="rotate or list the keys that sign admission slips")
    slip_keys.add_argument("action", choices=["rotate", "list"])
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"配置错误: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)

    if args.command == "migrate":
        asyncio.run(db.migrate(settings, progress=print))
        print("数据库已是最新结构")
    elif args.command == "seed":
        asyncio.run(_seed(settings))
    elif args.command == "seed-history":
        return asyncio.run(_seed_history(settings, args))
    elif args.command == "demo-accounts":
        rows = asyncio.run(_demo_accounts(settings))
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
        else:
            for a in rows:
                print(f"{a['institution_code']}\t{a['name']}\t{','.join(a['roles'])}\t{a['openid']}")
    elif args.command == "serve":
        if args.migrate:
            asyncio.run(db.migrate(settings, progress=print))
        if args.seed:
            asyncio.run(_seed(settings))
        _print_banner(settings, asyncio.run(_demo_accounts(settings)) if args.seed else [])
        web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)
    elif args.command == "audit-verify":
        from audit_verify import run_audit_verify

        return asyncio.run(run_audit_verify(settings))
    elif args.command == "slip-keys":
        from slips.cli import run_slip_keys

        return asyncio.run(run_slip_keys(settings, args.action))
    elif args.command == "jobs":
        from outbox.cli import run_jobs_command

        return asyncio.run(run_jobs_command(settings, args))
    elif args.command == "worker":
        from worker import run_worker

        asyncio.run(run_worker(settings))
    elif args.command == "demo":
        from demo import run_demo

        return asyncio.run(run_demo(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
