from core.exceptions import BadRequestException, NotFoundException


class PostNotFoundException(NotFoundException):
    error_code = "POST__NOT_FOUND"
    detail = "No such post."


class InvalidPostCursorException(BadRequestException):
    error_code = "POST__INVALID_CURSOR"
    detail = "The cursor is not one this API returned."
