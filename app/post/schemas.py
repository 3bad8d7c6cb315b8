from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.fastapi.schemas.update import PartialUpdate
from core.helpers.validators import MultilineText, PlainText

Title = Annotated[PlainText, AfterValidator(str.strip), Field(min_length=1, max_length=200)]


def _not_blank(value: str) -> str:
    # Kept as sent (indentation may matter), but a body of only spaces is no body.
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Body = Annotated[MultilineText, AfterValidator(_not_blank), Field(min_length=1, max_length=20_000)]


class PostCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    body: Body


class PostUpdate(PartialUpdate):
    """Only the fields that are sent change."""

    title: Title | None = None
    body: Body | None = None


class PostRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    author_id: int
    title: str
    body: str
    created_at: datetime
    updated_at: datetime
    version: int
