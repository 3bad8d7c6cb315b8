from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel

from celery_task import call_broker, caused_by, celery_app
from core.exceptions import NotFoundException
from core.fastapi.dependencies import IsAuthenticated, PermissionDependency
from core.fastapi.schemas.current_user import CurrentUser

router = APIRouter(prefix="/tasks", tags=["tasks"])


class TaskNotFoundException(NotFoundException):
    error_code = "TASK__NOT_FOUND"
    detail = "You have caused no task with this id."


TaskId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]


class TaskStatus(BaseModel):
    task_id: str
    state: str
    result: Any = None
    error: str | None = None


def _read_status(task_id: str) -> TaskStatus:
    outcome = celery_app.AsyncResult(task_id)
    state = outcome.state
    if state == "SUCCESS":
        return TaskStatus(task_id=task_id, state=state, result=outcome.result)
    if state == "FAILURE":
        # The error's type only: its message may hold data the caller must not see.
        return TaskStatus(task_id=task_id, state=state, error=type(outcome.result).__name__)
    return TaskStatus(task_id=task_id, state=state)


@router.get("/{task_id}", response_model=TaskStatus)
async def get_task(
    task_id: TaskId, user: CurrentUser = Depends(PermissionDependency([IsAuthenticated]))
) -> TaskStatus:
    """A task's state (PENDING also for ids nobody knows) and result: yours, or any for admins."""
    assert user.id is not None
    if not (user.is_admin or caused_by(task_id, user.id)):
        raise TaskNotFoundException()
    # The result backend client is synchronous: off the event loop, and 503 when out of reach.
    return await call_broker(lambda: _read_status(task_id))
