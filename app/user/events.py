from __future__ import annotations

import logging

from pydantic import BaseModel

from app.user.tasks import send_verification_email
from core.helpers.event import BaseEvent

logger = logging.getLogger(__name__)


class UserCreatedParameter(BaseModel):
    user_id: int


class UserCreated(BaseEvent):
    """A user registered; runs once the registration is committed."""

    async def run(self, parameter: UserCreatedParameter | None = None) -> None:
        assert parameter is not None
        await send_verification_email.adelay(parameter.user_id)


class UserDeletedParameter(BaseModel):
    user_id: int


class UserDeleted(BaseEvent):
    """A user was soft-deleted; modules that keep data of theirs react here."""

    async def run(self, parameter: UserDeletedParameter | None = None) -> None:
        assert parameter is not None
        logger.info("user %s deleted", parameter.user_id)
