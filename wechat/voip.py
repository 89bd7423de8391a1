"""The signature `wx.joinVoIPChat` takes (WeChat multi-person VoIP): HMAC-SHA256, keyed with the user's
session_key, of appId, groupId, nonceStr and timeStamp sorted and joined."""

from __future__ import annotations

import hashlib
import hmac


def voip_signature(app_id: str, group_id: str, nonce_str: str, time_stamp: int | str, session_key: str) -> str:
    message = "".join(sorted([app_id, group_id, nonce_str, str(time_stamp)]))
    return hmac.new(session_key.encode(), message.encode(), hashlib.sha256).hexdigest()
