from core.fastapi.middlewares.sqlalchemy import SQLAlchemyMiddleware

__all__ = ["SQLAlchemyMiddleware"]
