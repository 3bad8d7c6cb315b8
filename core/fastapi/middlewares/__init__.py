from core.fastapi.middlewares.authentication import AuthenticationMiddleware, authenticate
from core.fastapi.middlewares.basic_auth import BasicAuthMiddleware
from core.fastapi.middlewares.body_limit import BodyLimitMiddleware
from core.fastapi.middlewares.request_context import RequestContextMiddleware
from core.fastapi.middlewares.sqlalchemy import SQLAlchemyMiddleware

__all__ = [
    "AuthenticationMiddleware",
    "BasicAuthMiddleware",
    "BodyLimitMiddleware",
    "RequestContextMiddleware",
    "SQLAlchemyMiddleware",
    "authenticate",
]
