from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field

from core.fastapi.schemas.update import PartialUpdate
from core.helpers.validators import EncodableText, PlainText, encodable_text


def _no_encoded_word(address: str) -> str:
    # Mail software decodes "=?charset?q?...?=" in a To header: such an address would be mailed
    # somewhere else than the account it names.
    if "=?" in address:
        raise ValueError("must not contain an encoded word (=?)")
    return address


Email = Annotated[
    EmailStr,
    BeforeValidator(encodable_text),
    AfterValidator(_no_encoded_word),
    AfterValidator(str.lower),
]
Password = Annotated[EncodableText, Field(min_length=8, max_length=128)]
Nickname = Annotated[PlainText, AfterValidator(str.strip), Field(min_length=1, max_length=64)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: Password
    nickname: Nickname


class UserUpdate(PartialUpdate):
    """Only the fields that are sent change. A new password ends every session of the user."""

    nickname: Nickname | None = None
    password: Password | None = None
    # Applied once confirmed from the new address; needs current_password.
    email: Email | None = None
    current_password: EncodableText | None = Field(default=None, max_length=128)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    nickname: str
    is_admin: bool
    is_verified: bool
    created_at: datetime
    # Raised by every change; the ETag of GET /users/{id}, and what If-Match compares.
    version: int
