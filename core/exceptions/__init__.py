from core.exceptions.base import (
    BadRequestException,
    ConflictException,
    CustomException,
    DatabaseNotMigratedException,
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
    "DatabaseNotMigratedException",
    "DatabaseUnavailableException",
    "ForbiddenException",
    "NotFoundException",
    "ServiceUnavailableException",
    "TooManyRequestsException",
    "UnauthorizedException",
    "UnprocessableEntityException",
]
