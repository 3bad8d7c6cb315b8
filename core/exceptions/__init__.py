from core.exceptions.base import (
    BadRequestException,
    ConflictException,
    CustomException,
    DatabaseUnavailableException,
    ForbiddenException,
    NotFoundException,
    ServiceUnavailableException,
    TooManyRequestsException,
    UnauthorizedException,
    UnprocessableEntityException,
)

__all__ = [
    "BadRequestException",
    "ConflictException",
    "CustomException",
    "DatabaseUnavailableException",
    "ForbiddenException",
    "NotFoundException",
    "ServiceUnavailableException",
    "TooManyRequestsException",
    "UnauthorizedException",
    "UnprocessableEntityException",
]
