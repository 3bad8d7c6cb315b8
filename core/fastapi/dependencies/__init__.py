from core.fastapi.dependencies.logging import Logging
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
    "Logging",
    "PermissionDependency",
]
