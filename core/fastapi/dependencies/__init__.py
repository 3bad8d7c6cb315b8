from core.fastapi.dependencies.permissions import (
    AllowAll,
    AnyOf,
    BasePermission,
    HasPermission,
    IsAdmin,
    IsAuthenticated,
    PermissionDependency,
)

__all__ = [
    "AllowAll",
    "AnyOf",
    "BasePermission",
    "HasPermission",
    "IsAdmin",
    "IsAuthenticated",
    "PermissionDependency",
]
