"""`python app.py his-connection show|set|test CODE [...]`: an operator's way to read, change and test an
institution's HIS connection (the same rules as the admin API, his.connection). Secrets are never taken on the
command line, where `ps` and shell history would keep them: --secret-env NAME reads an environment variable,
--secret-file PATH a file, --secret-stdin standard input."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

import db
from errors import DomainError, InvalidInput
from his import connection
from his.auth import HisCredentials
from his.fhir import FhirGateway
from his.gateway import GatewayRouter
from kv import connect as connect_kv
from miniprogram_api.routing import validation_error
from models import Institution
from security.crypto import PersonalDataCipher
from settings import Settings

# (option, ConnectionChange field) of the plain settings.
_OPTIONS = (("--base-url", "base_url"), ("--auth", "auth"), ("--token-url", "token_url"),
            ("--client-id", "client_id"), ("--scope", "scope"), ("--key-id", "key_id"),
            ("--identifiers", "identifiers"))
# (option, field) of settings read from a file: PEM texts.
_FILES = (("--ca-bundle-file", "ca_bundle"), ("--client-cert-file", "client_cert"),
          ("--client-key-file", "client_key"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["show", "set", "test"])
    parser.add_argument("institution", metavar="CODE", help="institution code, e.g. SUBEI")
    for option, name in _OPTIONS:
        parser.add_argument(option, dest=name, default=None)
    for option, name in _FILES:
        parser.add_argument(option, dest=name, default=None, metavar="PATH")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--secret-env", metavar="NAME", help="read the secret from this environment variable")
    secret.add_argument("--secret-file", metavar="PATH", help="read the secret (or SMART private key) from a file")
    secret.add_argument("--secret-stdin", action="store_true", help="read the secret from standard input")
    secret.add_argument("--clear-secret", action="store_true", help="remove the stored secret")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _change(args: argparse.Namespace) -> connection.ConnectionChange:
    given = {name: getattr(args, name) for _, name in _OPTIONS if getattr(args, name) is not None}
    for _, name in _FILES:
        path = getattr(args, name)
        if path is not None:
            given[name] = Path(path).read_text() if path else ""
    if args.secret_env:
        if args.secret_env not in os.environ:
            raise InvalidInput(f"环境变量 {args.secret_env} 未设置")
        given["secret"] = os.environ[args.secret_env]
    elif args.secret_file:
        given["secret"] = Path(args.secret_file).read_text()
    elif args.secret_stdin:
        given["secret"] = sys.stdin.read()
    elif args.clear_secret:
        given["secret"] = ""
    try:
        return connection.ConnectionChange.model_validate(given)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def run_his_connection(settings: Settings, args: argparse.Namespace) -> int:
    await db.open_db(settings)
    try:
        institution = await Institution.get_or_none(code=args.institution, deleted_at=None)
        if institution is None:
            print(f"机构 {args.institution} 不存在", file=sys.stderr)
            return 1
        cipher = PersonalDataCipher(settings.data_key, settings.lookup_key)
        if args.action == "set":
            try:
                institution = await connection.save_connection(cipher, institution, _change(args))
            except DomainError as exc:
                print(exc.message, file=sys.stderr)
                return 1
        if args.action in ("show", "set"):
            view = connection.connection_view(institution)
            if args.json:
                print(view.model_dump_json())
            else:
                for label, value in connection.describe(view):
                    print(f"{label}：{value}")
            return 0
        return await _test(settings, cipher, institution, as_json=args.json)
    finally:
        await db.close_db()


async def _test(settings: Settings, cipher: PersonalDataCipher, institution: Institution, *, as_json: bool) -> int:
    kv = connect_kv(settings.redis_url, settings.redis_prefix)
    fhir = FhirGateway(timeout=settings.his_timeout,
                       credentials=HisCredentials(kv, lock_timeout=settings.his_timeout + 5))
    # No simulator here: an institution without a URL is reported as not configured.
    gateway = GatewayRouter({"http": fhir, "https": fhir},
                            endpoint_of=lambda row: connection.endpoint_of(cipher, row))
    try:
        report = await connection.run_connection_test(gateway, institution)
    finally:
        await gateway.close()
        await kv.close()
    if as_json:
        print(report.model_dump_json())
    else:
        marks = {True: "通过", False: "失败", None: "跳过"}
        for step in report.steps:
            print(f"[{marks[step.ok]}] {step.name}：{step.message}")
        print("连接正常" if report.ok else "连接测试未通过")
    return 0 if report.ok else 1
