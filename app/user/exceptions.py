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


class WrongCurrentPasswordException(ForbiddenException):
    error_code = "USER__WRONG_CURRENT_PASSWORD"
    detail = "That is not your current password."


class InvalidEmailTokenException(BadRequestException):
    error_code = "AUTH__INVALID_EMAIL_TOKEN"
    detail = "The link is not valid: it is unknown, used, expired or meant for something else."


class AdminDeletionForbiddenException(ForbiddenException):
    error_code = "USER__ADMIN_DELETION_FORBIDDEN"
    detail = "Only an admin may delete an admin."


class LastAdminException(ConflictException):
    error_code = "USER__LAST_ADMIN"
    detail = "This is the last active admin; make another admin first."
