from __future__ import annotations

from pydantic import BaseModel

from app.user.tasks import send_verification_email
from core.helpers.event import BaseEvent, DomainEvent


class UserCreatedParameter(BaseModel):
    user_id: int


class UserCreated(BaseEvent):
    """A user registered; runs once the registration is committed."""

    async def run(self, parameter: UserCreatedParameter | None = None) -> None:
        assert parameter is not None
        await send_verification_email.adelay(parameter.user_id)


class UserDeletedParameter(BaseModel):
    user_id: int


class UserDeleted(DomainEvent):
    """A user was deleted; once that is committed, every module subscribed reacts (the post
    module deletes their posts)."""
