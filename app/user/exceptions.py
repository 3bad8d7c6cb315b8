from core.exceptions import ConflictException, NotFoundException


class DuplicateEmailException(ConflictException):
    error_code = "USER__DUPLICATE_EMAIL"
    detail = "An account with this email address already exists."


class UserNotFoundException(NotFoundException):
    error_code = "USER__NOT_FOUND"
    detail = "No such user."
