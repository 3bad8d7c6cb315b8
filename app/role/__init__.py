from app.role.exceptions import (
    DuplicateRoleException,
    RoleNotFoundException,
    UnknownPermissionException,
    UnknownRoleException,
)
from app.role.models import Role, user_roles
from app.role.repository import ROLE_LIST
from app.role.schemas import (
    PermissionRead,
    RoleCreate,
    RoleRead,
    RoleUpdate,
    UserRolesRead,
    UserRolesUpdate,
)
from app.role.service import RoleService, role_service

__all__ = [
    "ROLE_LIST",
    "DuplicateRoleException",
    "PermissionRead",
    "Role",
    "RoleCreate",
    "RoleNotFoundException",
    "RoleRead",
    "RoleService",
    "RoleUpdate",
    "UnknownPermissionException",
    "UnknownRoleException",
    "UserRolesRead",
    "UserRolesUpdate",
    "role_service",
    "user_roles",
]
