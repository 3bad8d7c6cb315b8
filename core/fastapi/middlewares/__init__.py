from core.fastapi.middlewares.authentication import AuthenticationMiddleware, authenticate
from core.fastapi.middlewares.body_limit import BodyLimitMiddleware
from core.fastapi.middlewares.docs_auth import DocsAuthMiddleware, basic_credentials_match
from core.fastapi.middlewares.request_context import RequestContextMiddleware
from core.fastapi.middlewares.security_headers import SecurityHeadersMiddleware
from core.fastapi.middlewares.sqlalchemy import SQLAlchemyMiddleware

__all__ = [
    "AuthenticationMiddleware",
    "BodyLimitMiddleware",
    "DocsAuthMiddleware",
    "RequestContextMiddleware",
    "SQLAlchemyMiddleware",
    "SecurityHeadersMiddleware",
    "authenticate",
    "basic_credentials_match",
]
