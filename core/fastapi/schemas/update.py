"""The base of PATCH bodies: only the fields sent change, and null is not a value to send."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class PartialUpdate(BaseModel):
    """Fields default to None, meaning "not sent"; one sent as null is refused, as skipping it
    would tell the client it changed."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _sent_with_a_value(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("send a value, or leave the field out")
        return value
