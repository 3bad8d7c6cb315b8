from core.exceptions import (
    BadRequestException,
    ConflictException,
    ForbiddenException,
    NotFoundException,
)


class DuplicateEmailException(ConflictException):
    error_code = "USER__DUPLICATE_EMAIL"
    detail = "An account with this email address already exists."


class UserNotFoundException(NotFoundException):
    error_code = "USER__NOT_FOUND"
    detail = "No such user."


class InvalidCursorException(BadRequestException):
    error_code = "USER__INVALID_CURSOR"
    detail = "The cursor is not one this API returned."


class WrongCurrentPasswordException(ForbiddenException):
    error_code = "USER__WRONG_CURRENT_PASSWORD"
    detail = "To change your password, send your current one as current_password."
