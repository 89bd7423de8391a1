"""`python app.py slip-keys rotate|list`: rotate the slip signing key, or list the keys and which are published."""

from __future__ import annotations

import db
from models import SigningKey
from security.crypto import PersonalDataCipher
from settings import Settings
from slips import keys
from timeutil import china_time


async def run_slip_keys(settings: Settings, action: str) -> int:
    await db.open_db(settings)
    try:
        if action == "rotate":
            key, retired = await keys.rotate(PersonalDataCipher(settings.data_key, settings.lookup_key))
            print(f"已启用新的凭条签名密钥 {key.kid}")
            if retired:
                print(f"已停用旧密钥 {', '.join(retired)}：已签发的凭条仍可验证，直至过期")
            return 0
        published = {k.kid for k in await keys.published_keys()}
        for key in await SigningKey.filter(purpose=keys.PURPOSE).order_by("id"):
            state = "签发中" if key.retired_at is None else f"已停用于 {china_time(key.retired_at):%Y-%m-%d %H:%M}"
            shown = "已发布" if key.kid in published else "未发布"
            print(f"{key.kid}\t创建于 {china_time(key.created_at):%Y-%m-%d %H:%M}\t{state}\t{shown}")
        return 0
    finally:
        await db.close_db()
