from app.user.account import AccountService, account_service
from app.user.events import UserDeleted, UserDeletedParameter
from app.user.exceptions import (
    DuplicateEmailException,
    UserNotFoundException,
    WrongCurrentPasswordException,
)
from app.user.models import User
from app.user.permissions import IsSelf
from app.user.repository import USER_LIST
from app.user.schemas import Email, Password, UserCreate, UserRead, UserUpdate
from app.user.service import UserService, user_service
from app.user.tasks import send_password_reset, send_verification_email

__all__ = [
    "USER_LIST",
    "AccountService",
    "DuplicateEmailException",
    "Email",
    "IsSelf",
    "Password",
    "User",
    "UserCreate",
    "UserDeleted",
    "UserDeletedParameter",
    "UserNotFoundException",
    "UserRead",
    "UserService",
    "UserUpdate",
    "WrongCurrentPasswordException",
    "account_service",
    "send_password_reset",
    "send_verification_email",
    "user_service",
]
