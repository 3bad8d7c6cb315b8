from core.exceptions import ConflictException, UnprocessableEntityException


class DuplicateRoleException(ConflictException):
    error_code = "ROLE__DUPLICATE_NAME"
    detail = "A role with this name already exists."


class UnknownRoleException(UnprocessableEntityException):
    error_code = "ROLE__UNKNOWN"
    detail = "One or more of the roles do not exist."
