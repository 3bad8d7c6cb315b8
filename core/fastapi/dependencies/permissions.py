"""Route guards like `PermissionDependency([IsAuthenticated, ...])`:
the first permission that fails raises 401 for an anonymous caller, else its own exception (403)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Annotated

from fastapi import Path, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from pydantic import TypeAdapter, ValidationError

from core.exceptions import (
    CustomException,
    ForbiddenException,
    UnauthorizedException,
    invalid_field,
)
from core.fastapi.schemas.current_user import CurrentUser
from core.security.tokens import MAX_ID

# A row id in a path (a BIGINT column), as every route declares it.
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
_ROW_ID: TypeAdapter[int] = TypeAdapter(RowId)


def path_id(request: Request, name: str) -> int | None:
    """The route's `{name}` read as the route reads it ("5.0" is 5 there too); None on a route
    without it. Not an id: the route's own 422, which tells nothing, whoever asks."""
    if (value := request.path_params.get(name)) is None:
        return None
    try:
        return _ROW_ID.validate_python(value)
    except ValidationError as error:
        first = error.errors()[0]
        raise invalid_field(("path", name), first["msg"], first["type"]) from None


class BasePermission(ABC):
    exception: type[CustomException] = ForbiddenException

    @abstractmethod
    async def has_permission(self, request: Request) -> bool: ...


class AllowAll(BasePermission):
    async def has_permission(self, request: Request) -> bool:
        return True


class IsAuthenticated(BasePermission):
    exception = UnauthorizedException

    async def has_permission(self, request: Request) -> bool:
        return bool(request.user.is_authenticated)


class IsAdmin(BasePermission):
    async def has_permission(self, request: Request) -> bool:
        return bool(request.user.is_admin)


class EmailNotVerifiedException(ForbiddenException):
    error_code = "AUTH__EMAIL_NOT_VERIFIED"
    detail = "Confirm your email address first: follow the link in the mail we sent."


class IsVerified(BasePermission):
    exception = EmailNotVerifiedException

    async def has_permission(self, request: Request) -> bool:
        return bool(request.user.is_verified)


class HasPermission(BasePermission):
    """The caller holds `code` through one of their roles (admins hold every code)."""

    def __init__(self, code: str) -> None:
        self.code = code

    async def has_permission(self, request: Request) -> bool:
        return bool(request.user.has_permission(self.code))


class AnyOf(BasePermission):
    def __init__(self, *permissions: type[BasePermission] | BasePermission) -> None:
        self.permissions = _instances(permissions)

    async def has_permission(self, request: Request) -> bool:
        for permission in self.permissions:
            if await permission.has_permission(request):
                return True
        return False


def _instances(
    permissions: Sequence[type[BasePermission] | BasePermission],
) -> list[BasePermission]:
    return [p() if isinstance(p, type) else p for p in permissions]


# Every permission code a module declared, with what it allows.
_declared: dict[str, str] = {}


def declare_permissions(codes: Mapping[str, str]) -> Mapping[str, str]:
    """Make a module's permission codes known, `{"posts:delete": "what it allows"}`: roles may
    hold only declared codes, and GET /api/v1/permissions lists them."""
    for code, description in codes.items():
        if _declared.setdefault(code, description) != description:
            raise ValueError(f"permission {code!r} is declared twice, differently")
    return codes


def declared_permissions() -> dict[str, str]:
    return dict(sorted(_declared.items()))


class PermissionDependency(SecurityBase):
    """Enforces the permissions and returns the CurrentUser; a bearer security scheme, so OpenAPI
    marks the route as protected and Swagger's Authorize button sends the token."""

    def __init__(self, permissions: Sequence[type[BasePermission] | BasePermission]) -> None:
        self.permissions = _instances(permissions)
        self.model = HTTPBearerModel(bearerFormat="JWT")
        self.scheme_name = "BearerAuth"

    async def __call__(self, request: Request) -> CurrentUser:
        user: CurrentUser = request.user
        for permission in self.permissions:
            if not await permission.has_permission(request):
                if not user.is_authenticated:
                    raise UnauthorizedException()
                raise permission.exception()
        return user


__all__ = [
    "AllowAll",
    "AnyOf",
    "BasePermission",
    "EmailNotVerifiedException",
    "HasPermission",
    "IsAdmin",
    "IsAuthenticated",
    "IsVerified",
    "PermissionDependency",
    "RowId",
    "declare_permissions",
    "declared_permissions",
    "path_id",
]
