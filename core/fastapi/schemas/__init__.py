from core.fastapi.schemas.current_user import ANONYMOUS, CurrentUser

__all__ = ["ANONYMOUS", "CurrentUser"]
