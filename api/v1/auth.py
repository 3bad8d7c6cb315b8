from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from app.auth import LoginRequest, RefreshRequest, TokenPair, auth_service
from core.fastapi.dependencies import IsAuthenticated, PermissionDependency
from core.fastapi.schemas.current_user import CurrentUser

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", response_model=TokenPair)
async def login(body: LoginRequest, request: Request) -> TokenPair:
    """Exchange email and password for an access and a refresh token."""
    address = request.client.host if request.client else "unknown"
    return await auth_service.login(body, address)


@router.post("/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest) -> TokenPair:
    """Exchange a refresh token for a new pair; the used refresh token stops working."""
    return await auth_service.refresh(body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    user: CurrentUser = Depends(PermissionDependency([IsAuthenticated])),
) -> Response:
    """End this session: its access token and refresh tokens stop working."""
    await auth_service.logout(user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
