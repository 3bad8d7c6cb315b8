from app.user.exceptions import DuplicateEmailException, UserNotFoundException
from app.user.models import User
from app.user.schemas import UserCreate, UserRead
from app.user.service import UserService, user_service

__all__ = [
    "DuplicateEmailException",
    "User",
    "UserCreate",
    "UserNotFoundException",
    "UserRead",
    "UserService",
    "user_service",
]
