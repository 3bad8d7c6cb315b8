from core.fastapi.middlewares.authentication import AuthenticationMiddleware, authenticate
from core.fastapi.middlewares.request_context import RequestContextMiddleware
from core.fastapi.middlewares.security_headers import SecurityHeadersMiddleware
from core.fastapi.middlewares.sqlalchemy import SQLAlchemyMiddleware

__all__ = [
    "AuthenticationMiddleware",
    "RequestContextMiddleware",
    "SQLAlchemyMiddleware",
    "SecurityHeadersMiddleware",
    "authenticate",
]
