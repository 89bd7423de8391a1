"""What clients send, over HTTP and over the WebSocket alike."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chat.messages import Draft

MAX_TEXT = 1000


class CaseCard(BaseModel):
    """A patient's case in brief, as a card in the conversation (the patient's name is masked when stored)."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=60, description="卡片标题，如“病例摘要”")
    patient: str = Field(default="", max_length=20, description="患者姓名（保存时脱敏）")
    gender: str = Field(default="", max_length=8)
    age: str = Field(default="", max_length=8)
    diagnosis: str = Field(default="", max_length=200, description="初步诊断")
    summary: str = Field(default="", max_length=500, description="病情摘要")
    referral_id: uuid.UUID | None = None


class SendIn(BaseModel):
    """One message: `text` for text, `attachment_id` (from POST .../attachments) for image and file, `card` for a
    case card. `client_msg_id` is the sender's own id of the message: a retry with the same id returns the
    message stored the first time."""

    model_config = ConfigDict(extra="forbid")
    client_msg_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
    type: Literal["text", "image", "file", "case_card"]
    text: str | None = Field(default=None, max_length=MAX_TEXT, description=f"文本消息，最多 {MAX_TEXT} 字")
    attachment_id: uuid.UUID | None = None
    card: CaseCard | None = None

    @model_validator(mode="after")
    def _one_body(self) -> SendIn:
        needs = {"text": "text", "image": "attachment_id", "file": "attachment_id", "case_card": "card"}[self.type]
        for name in ("text", "attachment_id", "card"):
            present = getattr(self, name) is not None
            if name == needs and not present:
                raise ValueError(f"{self.type} 消息需要 {name}")
            if name != needs and present:
                raise ValueError(f"{self.type} 消息不能带 {name}")
        if self.type == "text" and not (self.text or "").strip():
            raise ValueError("消息内容不能为空")
        return self

    def draft(self) -> Draft:
        from security.masking import mask_name

        card = {}
        if self.card is not None:
            card = self.card.model_dump(mode="json", exclude_none=True)
            card["patient"] = mask_name(card.get("patient", "")) if card.get("patient") else ""
        return Draft(type=self.type, client_msg_id=self.client_msg_id, text=self.text or "",
                     attachment_id=self.attachment_id, card=card)


class SyncFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["sync"]
    conversations: dict[uuid.UUID, Annotated[int, Field(ge=0)]] = Field(max_length=500,
                                                description="会话编号 -> 客户端已收到的最大 seq（0：从头）")


class SendFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["send"]
    conversation_id: uuid.UUID
    message: SendIn


class ReadFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["read"]
    conversation_id: uuid.UUID
    seq: int = Field(ge=0)


class PingFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["ping"]
    id: str | None = Field(default=None, max_length=64)


FRAMES: dict[str, type[BaseModel]] = {"sync": SyncFrame, "send": SendFrame, "read": ReadFrame, "ping": PingFrame}
