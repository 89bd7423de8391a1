"""WeChat message push, checked and opened: signatures (constant time), timestamps, nonces, AES safe mode,
XML and JSON bodies. Nothing here trusts the body before the signature checks pass, and no XML reaches a
parser that would expand entities or fetch anything (defusedxml refuses DTDs and entities outright).

Signatures are computed with wechatpy's WeChatSigner and compared with `hmac.compare_digest`:
`wechatpy.utils.check_signature` and `WeChatCrypto.decrypt_message` compare with `!=`, which leaks timing.
The AES layer is wechatpy's PrpCrypto (AES-256-CBC, PKCS#7, appid check).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from wechatpy.crypto import PrpCrypto
from wechatpy.utils import WeChatSigner

from errors import DomainError, Unauthenticated
from kv import KV

MAX_BODY = 64 * 1024  # WeChat's pushes are a few hundred bytes
MAX_XML_DEPTH = 8  # xml > SubscribeMsgPopupEvent > List > item > field is WeChat's deepest
LATEST_CREATE_TIME = 4_102_444_800  # 2100-01-01: a CreateTime beyond is not a time but an attack on our ints
MAX_AGE = 300  # seconds a push may be old (or ahead of our clock)
NONCE_TTL = 2 * MAX_AGE + 60  # a nonce is remembered for as long as its timestamp is acceptable


class PayloadTooLarge(DomainError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"
    message = "推送内容过大"


class Replayed(DomainError):
    status = 409
    code = "PUSH_REPLAYED"
    message = "重复的推送请求"


class Malformed(DomainError):
    status = 400
    code = "PUSH_MALFORMED"
    message = "推送内容无法解析"


def malformed(reason: str) -> Malformed:
    return Malformed(f"推送内容无法解析（{reason}）")


# -- the message -------------------------------------------------------------------------------------------


class SubscribeItem(BaseModel):
    """One template in a subscribe_msg_* event."""

    model_config = ConfigDict(extra="ignore")
    TemplateId: str = Field(min_length=1, max_length=64)
    SubscribeStatusString: str | None = Field(default=None, max_length=32)
    PopupScene: str | None = Field(default=None, max_length=16)
    MsgID: str | None = Field(default=None, max_length=64)
    ErrorCode: str | None = Field(default=None, max_length=16)
    ErrorStatus: str | None = Field(default=None, max_length=64)


class PushMessage(BaseModel):
    """A pushed message or event, as the XML or JSON body (or its decrypted Encrypt) carries it."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    ToUserName: str = Field(default="", max_length=64, description="小程序原始 ID")
    FromUserName: str = Field(min_length=1, max_length=64, description="发送者 openid")
    CreateTime: int = Field(ge=0, le=LATEST_CREATE_TIME, description="消息创建时间（秒）")
    MsgType: str = Field(min_length=1, max_length=32, description="text / image / event / ...")
    Content: str | None = Field(default=None, max_length=2048, description="文本消息内容")
    MsgId: str | None = Field(default=None, max_length=64)
    Event: str | None = Field(default=None, max_length=64, description="事件类型，如 subscribe_msg_popup_event")
    items: list[SubscribeItem] = Field(default_factory=list, max_length=50, alias="List",
                                       description="订阅消息事件的模板列表")
    Encrypt: str | None = Field(default=None, max_length=MAX_BODY, description="安全模式下的密文")

    def dedupe_key(self) -> str:
        """WeChat retries a push it got no answer to: the same message is handled once."""
        if self.MsgId:
            ident = f"msg:{self.MsgId}"
        else:
            ident = f"from:{self.FromUserName}:{self.CreateTime}:{self.Event or self.MsgType}"
        if len(ident) > 120:
            ident = "sha:" + hashlib.sha256(ident.encode()).hexdigest()
        return f"bot:{ident}"


# -- signatures, time, nonces ---------------------------------------------------------------------------------


def signature(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def check_signature(token: str, given: str | None, timestamp: str, nonce: str, *extra: str) -> None:
    expected = signature(token, timestamp, nonce, *extra)
    if not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Unauthenticated("推送签名校验失败", code="PUSH_SIGNATURE")


def check_timestamp(timestamp: str, now: float | None = None) -> None:
    try:
        sent = int(timestamp)
    except ValueError:
        raise malformed("timestamp 应为整数秒") from None
    if abs((now if now is not None else time.time()) - sent) > MAX_AGE:
        raise Unauthenticated("推送时间戳已过期", code="PUSH_STALE")


async def claim_nonce(kv: KV, timestamp: str, nonce: str) -> str:
    """Remember the nonce; a second request with it is a replay. Returns the key (to forget it on failure)."""
    key = "bot:nonce:" + hashlib.sha256(f"{timestamp}:{nonce}".encode()).hexdigest()
    if not await kv.set(key, "1", ex=NONCE_TTL, nx=True):
        raise Replayed()
    return key


# -- bodies ----------------------------------------------------------------------------------------------------


def _element_to_value(element: Element) -> Any:
    children = list(element)
    if not children:
        return (element.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        value = _element_to_value(child)
        if child.tag in out:
            if not isinstance(out[child.tag], list):
                out[child.tag] = [out[child.tag]]
            out[child.tag].append(value)
        else:
            out[child.tag] = value
    return out


def _xml_depth(root: Element) -> int:
    """How deeply elements nest, counted without recursion (the conversion below recurses)."""
    deepest, stack = 0, [(root, 1)]
    while stack:
        element, level = stack.pop()
        deepest = max(deepest, level)
        if level <= MAX_XML_DEPTH:
            stack.extend((child, level + 1) for child in element)
    return deepest


def parse_xml(raw: bytes | str) -> dict[str, Any]:
    try:
        root = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise malformed("XML 不得包含 DTD 或实体") from None
    except (ParseError, ValueError, UnicodeError):
        raise malformed("不是有效的 XML") from None
    if root.tag != "xml":
        raise malformed("XML 根元素应为 xml")
    if _xml_depth(root) > MAX_XML_DEPTH:
        raise malformed(f"XML 嵌套过深（最多 {MAX_XML_DEPTH} 层）")
    value = _element_to_value(root)
    if not isinstance(value, dict):
        raise malformed("XML 内容为空")
    return value


def parse_json(raw: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeError, RecursionError):
        raise malformed("不是有效的 JSON") from None
    if not isinstance(value, dict):
        raise malformed("JSON 应为对象")
    return value


def is_json(raw: bytes) -> bool:
    return raw.lstrip()[:1] == b"{"


def parse_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise malformed("内容为空")
    return parse_json(raw) if is_json(raw) else parse_xml(raw)


def _scalar(value: Any) -> Any:
    # JSON pushes carry numbers where XML carries text; our model wants text for ids and codes.
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    return value


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Both body formats to one shape: the subscribe events' `List` (an object when there is one item, an
    array when several; nested under SubscribeMsg*Event in XML) as one list of items."""
    out = {k: _scalar(v) for k, v in data.items() if not isinstance(v, (dict, list))}
    items = data.get("List")
    for wrapper in ("SubscribeMsgPopupEvent", "SubscribeMsgChangeEvent", "SubscribeMsgSentEvent"):
        nested = data.get(wrapper)
        if isinstance(nested, dict) and "List" in nested:
            items = nested["List"]
    if isinstance(items, dict):
        items = [items]
    if isinstance(items, list):
        out["List"] = [{k: _scalar(v) for k, v in item.items()} for item in items if isinstance(item, dict)]
    return out


def decrypt(encrypted: str, aes_key: str, appid: str) -> bytes:
    """The plaintext of a safe-mode `Encrypt` (raises PUSH_MALFORMED for anything that does not open)."""
    try:
        key = base64.b64decode(aes_key + "=")
        return PrpCrypto(key).decrypt(encrypted, appid).encode()
    except Exception:
        # Garbage base64, bad padding, a wrong length or another app's id: all the same to the sender.
        raise malformed("密文无法解密") from None


def open_push(raw: bytes, *, token: str, aes_key: str, appid: str, timestamp: str, nonce: str,
              encrypt_type: str | None, msg_signature: str | None) -> PushMessage:
    """The message of a push whose URL signature has been checked: decrypt in safe mode, parse, validate."""
    data = parse_body(raw)
    if encrypt_type == "aes":
        encrypted = data.get("Encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise malformed("安全模式推送缺少 Encrypt")
        check_signature(token, msg_signature, timestamp, nonce, encrypted)
        inner = decrypt(encrypted, aes_key, appid)
        data = parse_json(inner) if is_json(inner) else parse_xml(inner)
    try:
        return PushMessage.model_validate(normalise(data))
    except ValidationError:
        raise malformed("缺少必要字段或字段格式不正确") from None
