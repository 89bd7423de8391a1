"""Every piece of shared application state, under a typed key (aiohttp's AppKey)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from aiohttp import ClientSession
    from tortoise.context import TortoiseContext

    from his.gateway import HisGateway
    from his.simulator import SimulatorState
    from kv import KV
    from metrics import Metrics
    from security.crypto import PersonalDataCipher
    from settings import Settings
    from storage import Storage
    from wechat.client import WeChatClient
    from wechat.sandbox import SandboxState

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DB: web.AppKey[TortoiseContext] = web.AppKey("db")
KV_STORE: web.AppKey[KV] = web.AppKey("kv")
HTTP: web.AppKey[ClientSession] = web.AppKey("http")
WECHAT: web.AppKey[WeChatClient] = web.AppKey("wechat")
WECHAT_SANDBOX: web.AppKey[SandboxState] = web.AppKey("wechat_sandbox")
CIPHER: web.AppKey[PersonalDataCipher] = web.AppKey("cipher")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
HIS: web.AppKey[HisGateway] = web.AppKey("his")
HIS_SIMULATOR: web.AppKey[SimulatorState] = web.AppKey("his_simulator")
STORAGE: web.AppKey[Storage] = web.AppKey("storage")
