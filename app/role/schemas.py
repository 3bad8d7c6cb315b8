from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.fastapi.schemas.update import PartialUpdate
from core.helpers.validators import PlainText

RoleName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
Description = Annotated[PlainText, Field(max_length=255)]
PermissionCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$", max_length=64)]


def _sorted_unique(values: list[str]) -> list[str]:
    return sorted(set(values))


class RoleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: RoleName
    description: Description = ""
    permissions: Annotated[list[PermissionCode], AfterValidator(_sorted_unique)] = Field(
        default_factory=list, max_length=100
    )


class RoleUpdate(PartialUpdate):
    """Only the fields that are sent change."""

    description: Description | None = None
    permissions: Annotated[list[PermissionCode], AfterValidator(_sorted_unique)] | None = Field(
        default=None, max_length=100
    )


class RoleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    permissions: list[str]


class UserRolesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: Annotated[list[RoleName], AfterValidator(_sorted_unique)] = Field(max_length=100)


class UserRolesRead(BaseModel):
    user_id: int
    roles: list[str]


class PermissionRead(BaseModel):
    code: str
    description: str
