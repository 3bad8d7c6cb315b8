from core.exceptions import ConflictException, NotFoundException, UnprocessableEntityException


class DuplicateTierException(ConflictException):
    error_code = "TIER__DUPLICATE_NAME"
    detail = "A tier with this name already exists."


class TierNotFoundException(NotFoundException):
    error_code = "TIER__NOT_FOUND"
    detail = "No such tier."


class UnknownTierException(UnprocessableEntityException):
    error_code = "TIER__UNKNOWN"
    detail = "No such tier."


class DuplicateRateLimitException(ConflictException):
    error_code = "TIER__DUPLICATE_RATE_LIMIT"
    detail = "This tier already has a limit for this path; delete it first."


class RateLimitNotFoundException(NotFoundException):
    error_code = "TIER__RATE_LIMIT_NOT_FOUND"
    detail = "No such rate limit in this tier."
