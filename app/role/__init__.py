from app.role.exceptions import (
    DuplicateRoleException,
    RoleNotFoundException,
    UnknownRoleException,
)
from app.role.models import Role, user_roles
from app.role.repository import ROLE_LIST
from app.role.schemas import RoleCreate, RoleRead, RoleUpdate, UserRolesRead, UserRolesUpdate
from app.role.service import RoleService, role_service

__all__ = [
    "ROLE_LIST",
    "DuplicateRoleException",
    "Role",
    "RoleCreate",
    "RoleNotFoundException",
    "RoleRead",
    "RoleService",
    "RoleUpdate",
    "UnknownRoleException",
    "UserRolesRead",
    "UserRolesUpdate",
    "role_service",
    "user_roles",
]
