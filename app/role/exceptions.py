from core.exceptions import ConflictException, NotFoundException, UnprocessableEntityException


class DuplicateRoleException(ConflictException):
    error_code = "ROLE__DUPLICATE_NAME"
    detail = "A role with this name already exists."


class UnknownRoleException(UnprocessableEntityException):
    error_code = "ROLE__UNKNOWN"
    detail = "One or more of the roles do not exist."


class RoleNotFoundException(NotFoundException):
    error_code = "ROLE__NOT_FOUND"
    detail = "No such role."


class UnknownPermissionException(UnprocessableEntityException):
    error_code = "ROLE__UNKNOWN_PERMISSION"
    detail = "One or more of the permission codes are not declared by any module."
