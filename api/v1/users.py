from __future__ import annotations

from fastapi import APIRouter, Path, status

from app.user import User, UserCreate, UserRead, user_service

router = APIRouter(prefix="/users", tags=["users"])

UserId = Path(ge=1, le=2**63 - 1)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UserRead)
async def register_user(body: UserCreate) -> User:
    """Register a new account."""
    return await user_service.register(body)


@router.get("/{user_id}", response_model=UserRead)
async def get_user(user_id: int = UserId) -> User:
    """Read one user."""
    return await user_service.get(user_id)
