from core.fastapi.middlewares.authentication import AuthenticationMiddleware, TokenAuthBackend
from core.fastapi.middlewares.sqlalchemy import SQLAlchemyMiddleware

__all__ = ["AuthenticationMiddleware", "SQLAlchemyMiddleware", "TokenAuthBackend"]
