"""Referral Cloud: the one app factory and the command line.

    python app.py serve [--workers N] | migrate | seed | seed-history | demo [--port N | --url URL]
                | demo-accounts [--json] | worker | jobs [--dead] [--retry ID] | his-connection show|set|test CODE
                | audit-verify | slip-keys rotate|list
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
import speedups
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
    import chat
    import console
    import consults
    import his
    import miniprogram_api
    import notifications
    import outbox
    import wechat
    from directory import cache as directory_cache
    from metrics import Metrics
    from miniprogram_api.middleware import error_middleware, metrics_middleware
    from security.access_log import PrivateAccessLogger
    from slips import keys as slip_keys

    app = web.Application(
        middlewares=[metrics_middleware, error_middleware],
        client_max_size=settings.max_body,
        handler_args={"access_log_class": PrivateAccessLogger},  # no query values in the access log
    )
    app[SETTINGS] = settings
    speedups.configure(settings)
    app[CIPHER] = PersonalDataCipher(settings.data_key, settings.lookup_key)
    app[STORAGE] = LocalStorage(settings.data_dir / "files")
    from appkeys import METRICS

    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_kv_store)
    app.cleanup_ctx.append(directory_cache.sync)
    app.cleanup_ctx.append(slip_keys.published_from_start)
    wechat.setup(app)
    notifications.setup(app)
    his.setup(app)
    bot.setup(app)
    consults.setup(app)
    chat.setup(app)
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
    from directory.seed import DEMO_BED_DAYS, DEMO_BEDS, seed_demo, seed_demo_beds
    from stats.demo import seed_demo_history

    await db.open_db(settings)
    try:
        created = await seed_demo(settings)
        if created:
            # A few months of generated history, so that a newcomer sees figures rather than empty tables.
            await seed_demo_history(PersonalDataCipher(settings.data_key, settings.lookup_key))
        beds = await seed_demo_beds()
    finally:
        await db.close_db()
    if not quiet:
        print("已写入演示医联体（含数月转诊历史）" if created else "演示医联体已存在，未重复写入")
        if beds:
            print(f"已为演示科室发布预留转诊床位：今天起 {DEMO_BED_DAYS} 天，每科每天 {DEMO_BEDS} 张"
                  f"（补齐 {beds} 个科室日）")


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
    if settings.embedded_wechat:
        print(f"  微信沙箱:            {base}/wechat-sandbox/sandbox/messages")
    if settings.embedded_his:
        print(f"  HIS 模拟器:          {base}/his-sim/<机构代码>/fhir/metadata")
        print(f"  演示患者（可扫码）:  {base}/his-sim/<机构代码>/_patients   例如 {base}/his-sim/DONGGUAN/_patients")
    if accounts:
        print("\n演示账号 (POST /wechat-sandbox/sandbox/login-code {\"openid\": ...} 取登录 code；"
              "HIS 工号用于 /his-sim/<机构代码>/_launch-token 单点登录):")
        for a in accounts:
            print(f"  {a['institution_code']:<8} {a['name']:<6} {','.join(a['roles']):<16} "
                  f"{a['his_user_id'] or '-':<20} {a['openid']}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="app.py", description="双向转诊云平台")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the platform")
    serve.add_argument("--migrate", action="store_true", help="apply migrations first")
    serve.add_argument("--seed", action="store_true", help="seed the demo consortium first")
    serve.add_argument("--workers", type=int, default=1,
                       help="web processes sharing the port (SO_REUSEPORT); more than one needs Redis, "
                            "WECHAT_API_BASE and EMBEDDED_HIS=false")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # one of --workers' processes
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
    demo = sub.add_parser("demo", help="walk the paper's referral flow against the running platform")
    demo.add_argument("--port", type=int, help="the running platform's port on this machine (default: PORT)")
    demo.add_argument("--url", help="the running platform's base URL (default: PUBLIC_URL, else http://HOST:PORT)")
    slip_keys = sub.add_parser("slip-keys", help="rotate or list the keys that sign admission slips")
    slip_keys.add_argument("action", choices=["rotate", "list"])
    his_connection = sub.add_parser("his-connection", help="show, set or test an institution's HIS connection")
    from his.cli import add_arguments as add_his_connection_arguments

    add_his_connection_arguments(his_connection)
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"配置错误 / configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    speedups.install_event_loop(settings.speedups)

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
                print(f"{a['institution_code']}\t{a['name']}\t{','.join(a['roles'])}\t{a['his_user_id'] or '-'}\t"
                      f"{a['openid']}")
    elif args.command == "serve":
        from web_processes import serve_processes, shared_state_problems

        problems = shared_state_problems(settings) if args.workers > 1 else []
        if args.workers < 1:
            problems = ["--workers must be at least 1"]
        if problems:
            print("配置错误: --workers 大于 1 时各进程须共享状态:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 2
        if args.migrate:
            asyncio.run(db.migrate(settings, progress=print))
        # The children of --workers N (--reuse-port) neither seed nor print: their parent did.
        seed = (args.seed or settings.seed_demo) and not args.reuse_port
        if seed:
            asyncio.run(_seed(settings))
            _print_banner(settings, asyncio.run(_demo_accounts(settings)))
        elif not args.reuse_port:
            _print_banner(settings, [])
        if args.workers > 1:
            return serve_processes(args.workers)
        import http_server

        http_server.run(create_app(settings), settings.host, settings.port, reuse_port=args.reuse_port or None)
    elif args.command == "audit-verify":
        from audit_verify import run_audit_verify

        return asyncio.run(run_audit_verify(settings))
    elif args.command == "slip-keys":
        from slips.cli import run_slip_keys

        return asyncio.run(run_slip_keys(settings, args.action))
    elif args.command == "his-connection":
        from his.cli import run_his_connection

        return asyncio.run(run_his_connection(settings, args))
    elif args.command == "jobs":
        from outbox.cli import run_jobs_command

        return asyncio.run(run_jobs_command(settings, args))
    elif args.command == "worker":
        from worker import run_worker

        asyncio.run(run_worker(settings))
    elif args.command == "demo":
        from dataclasses import replace

        from demo import run_demo

        if args.port is not None:
            settings = replace(settings, port=args.port, public_url="")
        if args.url:
            settings = replace(settings, public_url=args.url)
        return asyncio.run(run_demo(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
