from __future__ import annotations

from pydantic import BaseModel

from app.user.tasks import send_welcome_email
from core.helpers.event import BaseEvent


class UserCreatedParameter(BaseModel):
    user_id: int


class UserCreated(BaseEvent):
    """A user registered; runs once the registration is committed."""

    async def run(self, parameter: UserCreatedParameter | None = None) -> None:
        assert parameter is not None
        await send_welcome_email.adelay(parameter.user_id)
