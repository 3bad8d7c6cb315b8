from core.exceptions import NotFoundException


class PostNotFoundException(NotFoundException):
    error_code = "POST__NOT_FOUND"
    detail = "No such post."
