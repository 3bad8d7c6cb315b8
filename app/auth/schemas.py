from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.user import Email, Password
from core.helpers.validators import EncodableText


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: EncodableText = Field(min_length=1, max_length=128)


# What secrets.token_urlsafe makes: anything else is not a token of ours (422).
EmailTokenText = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: EncodableText = Field(min_length=1, max_length=4096)


class TokenPair(BaseModel):
    access_token: str
    # Left out when REFRESH_TOKEN_COOKIE puts it in a cookie.
    refresh_token: str | None = None
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class SessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: datetime
    last_used_at: datetime | None
    user_agent: str | None
    ip: str | None
    current: bool = False


class EmailTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: EmailTokenText


class ForgotPasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email


class ResetPasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: EmailTokenText
    password: Password


class PasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: EncodableText = Field(min_length=1, max_length=128)


class Accepted(BaseModel):
    detail: str


class QueuedTask(BaseModel):
    task_id: str
