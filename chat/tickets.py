"""One-time tickets for opening the realtime WebSocket: a browser's WebSocket cannot send an Authorization
header, and an access token in a URL would end up in access logs for its whole life.

A ticket is a JWT (typ "realtime", so it is never taken for an access token, nor one for it) naming the account,
valid REALTIME_TICKET_TTL seconds. It is spent on first use by an atomic set-if-absent of its id in the KV store,
shared by every `web` process. When the store is unreachable, the process remembers the tickets it accepted
itself: a ticket could then be used once per process within its few seconds of life, which keeps clients
able to reconnect while Redis is away."""

from __future__ import annotations

import time
import uuid

import jwt

from accounts.tokens import ALGORITHM, ISSUER
from errors import Unauthenticated
from kv import KV

TYP = "realtime"


def issue(secret: str, account_public_id: uuid.UUID, ttl: int) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": str(account_public_id), "typ": TYP, "iat": now, "exp": now + ttl,
              "jti": uuid.uuid4().hex}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


class Redeemer:
    """Spends tickets; remembers the ones it spent itself for when the KV store cannot answer."""

    def __init__(self, store: KV) -> None:
        self.kv = store
        self._spent_here: dict[str, float] = {}

    async def redeem(self, secret: str, ticket: str) -> uuid.UUID:
        """The account the ticket was issued to; raises Unauthenticated if it is bad, expired or spent."""
        if not ticket:
            raise Unauthenticated("缺少实时连接票据，请先调用 POST /api/v1/realtime/ticket", code="TICKET_REQUIRED")
        try:
            claims = jwt.decode(ticket, secret, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["exp", "sub", "jti"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("实时连接票据已过期，请重新获取", code="TICKET_EXPIRED") from None
        except jwt.PyJWTError:
            raise Unauthenticated("实时连接票据无效", code="TICKET_INVALID") from None
        if claims.get("typ") != TYP:
            raise Unauthenticated("实时连接票据无效", code="TICKET_INVALID")
        try:
            account = uuid.UUID(str(claims["sub"]))
        except ValueError:
            raise Unauthenticated("实时连接票据无效", code="TICKET_INVALID") from None
        jti, expires = str(claims["jti"]), float(claims["exp"])
        if not await self._spend(jti, expires):
            raise Unauthenticated("实时连接票据已使用过，请重新获取", code="TICKET_USED")
        return account

    async def _spend(self, jti: str, expires: float) -> bool:
        now = time.time()
        if len(self._spent_here) > 1000:
            self._spent_here = {k: v for k, v in self._spent_here.items() if v > now}
        if jti in self._spent_here:
            return False
        self._spent_here[jti] = expires
        try:
            return await self.kv.set(f"realtime:ticket:{jti}", "1", ex=max(expires - now, 1.0) + 5, nx=True)
        except Exception:
            return True  # the store is away: this process's own memory is all there is (see the module docstring)
