from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from app.user.exceptions import DuplicateEmailException, UserNotFoundException
from app.user.models import User
from app.user.repository import UserRepository
from app.user.schemas import UserCreate
from core.db import Transactional
from core.security.passwords import hash_password


class UserService:
    def __init__(self, repository: UserRepository | None = None) -> None:
        self.repository = repository or UserRepository()

    @Transactional()
    async def register(self, data: UserCreate) -> User:
        # Hash before touching the database, so no connection is held during the slow part.
        password_hash = await hash_password(data.password)
        user = User(email=data.email, password_hash=password_hash, nickname=data.nickname)
        try:
            return await self.repository.add(user)
        except IntegrityError as error:
            # The unique constraint decides, so two concurrent registrations cannot both win.
            raise DuplicateEmailException() from error

    async def get(self, user_id: int) -> User:
        user = await self.repository.get(user_id)
        if user is None:
            raise UserNotFoundException()
        return user


user_service = UserService()
