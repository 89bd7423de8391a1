"""The command line: migrate, seed (idempotent) and demo-accounts on a fresh embedded installation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from directory.seed import CONSORTIUM_OFFICE, INSTITUTIONS, PEOPLE

ROOT = Path(__file__).resolve().parent.parent


def _run(tmp_path, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["DATA_DIR"] = str(tmp_path)
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_migrate_seed_and_list_demo_accounts(tmp_path):
    assert _run(tmp_path, "migrate").returncode == 0
    first = _run(tmp_path, "seed")
    assert first.returncode == 0 and "已写入" in first.stdout
    second = _run(tmp_path, "seed")
    assert second.returncode == 0 and "未重复写入" in second.stdout
    listed = _run(tmp_path, "demo-accounts", "--json")
    assert listed.returncode == 0, listed.stderr
    accounts = json.loads(listed.stdout)
    assert len(accounts) == len(INSTITUTIONS) * len(PEOPLE) + 1  # and the consortium office
    for code, *_ in INSTITUTIONS:
        roles = {role for a in accounts if a["institution_code"] == code for role in a["roles"]}
        office = {"consortium_admin"} if code == CONSORTIUM_OFFICE[0] else set()
        assert roles == {"doctor", "approver", "admission_clerk", "expert", "admin"} | office
    assert all(a["openid"].startswith("demo_") for a in accounts)


def test_a_wrong_setting_is_reported_by_name(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path), "PORT": "eighty"}
    result = subprocess.run([sys.executable, "app.py", "migrate"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "PORT" in result.stderr and "配置错误" in result.stderr
