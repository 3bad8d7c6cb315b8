from app.user.exceptions import DuplicateEmailException, UserNotFoundException
from app.user.models import User
from app.user.permissions import IsSelf
from app.user.schemas import UserCreate, UserPage, UserRead, UserUpdate
from app.user.service import UserService, user_service

__all__ = [
    "DuplicateEmailException",
    "IsSelf",
    "User",
    "UserCreate",
    "UserNotFoundException",
    "UserPage",
    "UserRead",
    "UserService",
    "UserUpdate",
    "user_service",
]
