"""Fixed-window request limits kept in the KV store, shared by every web process."""

from __future__ import annotations

import hashlib
import time

from kv import KV


async def within_limit(kv: KV, name: str, subject: str, *, limit: int, window: int) -> bool:
    """Count one more use of `name` by `subject` (an address, an account) in the current window of `window`
    seconds; False once more than `limit` were counted. The subject is hashed: addresses stay out of the store."""
    slot = int(time.time() // window)
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return await kv.incr(f"limit:{name}:{digest}:{slot}", ex=window) <= limit
