from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from core.config import MAX_LIMIT_REQUESTS, TIER_NAME_PATTERN
from core.helpers.validators import PlainText

TierName = Annotated[str, Field(pattern=TIER_NAME_PATTERN)]


class TierCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TierName
    description: Annotated[PlainText, Field(max_length=255)] = ""


class TierRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str


class RateLimitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A route's path template, as the routes declare it: "/api/v1/users/{user_id}".
    path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_{}/.-]*$", max_length=255)]
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT_REQUESTS)]
    period_seconds: Annotated[int, Field(ge=1, le=86_400)]


class RateLimitRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    path: str
    limit: int
    period_seconds: int


class UserTierUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: TierName


class UserTierRead(BaseModel):
    user_id: int
    tier: str
