from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from app.auth import (
    SESSION_LIST,
    Accepted,
    CsrfException,
    EmailTokenRequest,
    ForgotPasswordRequest,
    LoginRequest,
    QueuedTask,
    RefreshRequest,
    ResetPasswordRequest,
    SessionRead,
    TokenPair,
    auth_service,
)
from app.user import UserRead, account_service
from core.config import config
from core.fastapi.dependencies import IsAuthenticated, PermissionDependency, RateLimit
from core.fastapi.lists import ListQuery, Page
from core.fastapi.schemas.current_user import CurrentUser
from core.security.tokens import InvalidTokenException

router = APIRouter(prefix="/auth", tags=["auth"])
authenticated = PermissionDependency([IsAuthenticated])

REFRESH_COOKIE = "refresh_token"
CSRF_COOKIE = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_PATH = "/api/v1/auth"
SessionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _in_cookies(response: Response, tokens: TokenPair) -> TokenPair:
    """Cookie mode: the refresh token goes into an HttpOnly cookie, out of the body, with a
    CSRF token beside it that the page's script can read and send back as a header."""
    if not config.REFRESH_TOKEN_COOKIE:
        return tokens
    secure = config.ENV not in ("local", "test")
    lifetime = config.REFRESH_TOKEN_EXPIRE_MINUTES * 60
    # The CSRF cookie on "/" and readable, so the frontend's pages can copy it into the header.
    for name, value, path, httponly in (
        (REFRESH_COOKIE, tokens.refresh_token or "", COOKIE_PATH, True),
        (CSRF_COOKIE, secrets.token_urlsafe(32), "/", False),
    ):
        response.set_cookie(
            name,
            value,
            max_age=lifetime,
            path=path,
            secure=secure,
            httponly=httponly,
            samesite="strict",
        )
    return tokens.model_copy(update={"refresh_token": None})


def _refresh_token(request: Request, body: RefreshRequest | None) -> str:
    if body is not None:
        return body.refresh_token
    cookie = request.cookies.get(REFRESH_COOKIE)
    if not config.REFRESH_TOKEN_COOKIE or not cookie:
        raise InvalidTokenException("Send the refresh token as refresh_token.")
    # Double submit: a cross-site page can make the browser send the cookie, not read it.
    expected, sent = request.cookies.get(CSRF_COOKIE, ""), request.headers.get(CSRF_HEADER, "")
    if not expected or not secrets.compare_digest(expected.encode(), sent.encode()):
        raise CsrfException()
    return cookie


@router.post(
    "/login",
    response_model=TokenPair,
    response_model_exclude_none=True,
    dependencies=[Depends(RateLimit())],
)
async def login(body: LoginRequest, request: Request, response: Response) -> TokenPair:
    """Exchange email and password for an access and a refresh token."""
    response.headers["Cache-Control"] = "no-store"
    user_agent = request.headers.get("user-agent")
    tokens = await auth_service.login(body, client_address(request), user_agent)
    return _in_cookies(response, tokens)


@router.post(
    "/refresh",
    response_model=TokenPair,
    response_model_exclude_none=True,
    dependencies=[Depends(RateLimit())],
)
async def refresh(
    request: Request, response: Response, body: RefreshRequest | None = None
) -> TokenPair:
    """Exchange a refresh token (body, or the cookie) for a new pair; the used one stops working."""
    response.headers["Cache-Control"] = "no-store"
    tokens = await auth_service.refresh(_refresh_token(request, body))
    return _in_cookies(response, tokens)


def _ended(response: Response) -> Response:
    if config.REFRESH_TOKEN_COOKIE:
        response.delete_cookie(REFRESH_COOKIE, path=COOKIE_PATH)
        response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(RateLimit())])
async def logout(user: CurrentUser = Depends(authenticated)) -> Response:
    """End this session: its access token and refresh tokens stop working."""
    await auth_service.logout(user)
    return _ended(Response(status_code=status.HTTP_204_NO_CONTENT))


@router.post(
    "/logout-all", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(RateLimit())]
)
async def logout_all(user: CurrentUser = Depends(authenticated)) -> Response:
    """End every session of yours, this one included."""
    assert user.id is not None
    await auth_service.logout_all(user.id)
    return _ended(Response(status_code=status.HTTP_204_NO_CONTENT))


@router.get(
    "/sessions",
    response_model=Page[SessionRead],
    openapi_extra=SESSION_LIST.openapi,
    dependencies=[Depends(RateLimit())],
)
async def list_sessions(
    # The caller first: without a token the answer is 401, whatever the query string says.
    user: Annotated[CurrentUser, Depends(authenticated)],
    query: Annotated[ListQuery, Depends(SESSION_LIST.dependency)],
) -> Page[SessionRead]:
    """Your sessions that can still refresh, newest first; paged as every list is."""
    assert user.id is not None
    return await auth_service.sessions(user.id, user.session_id, query)


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(RateLimit())],
)
async def end_session(
    session_id: SessionId, user: CurrentUser = Depends(authenticated)
) -> Response:
    """End one of your sessions: its tokens stop working."""
    assert user.id is not None
    await auth_service.end_session(user.id, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/verify-email", response_model=UserRead, dependencies=[Depends(RateLimit())])
async def verify_email(body: EmailTokenRequest) -> UserRead:
    """Confirm an address with the token from the verification mail."""
    return await account_service.verify_email(body.token)


@router.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=QueuedTask,
    dependencies=[Depends(RateLimit())],
)
async def resend_verification(
    request: Request, user: CurrentUser = Depends(authenticated)
) -> QueuedTask:
    """Mail a new verification link; follow it at /api/v1/tasks/{task_id}."""
    assert user.id is not None
    return QueuedTask(
        task_id=await auth_service.resend_verification(user.id, client_address(request))
    )


@router.post(
    "/forgot-password",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    dependencies=[Depends(RateLimit())],
)
async def forgot_password(body: ForgotPasswordRequest, request: Request) -> Accepted:
    """Mail a reset link if the address has an account; the answer is the same either way."""
    await auth_service.forgot_password(body.email, client_address(request))
    return Accepted(detail="If the address has an account, a reset link is on its way.")


@router.post(
    "/reset-password", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(RateLimit())]
)
async def reset_password(body: ResetPasswordRequest) -> Response:
    """Set a new password with the token from the reset mail; every session ends."""
    await account_service.reset_password(body.token, body.password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/confirm-email-change", response_model=UserRead, dependencies=[Depends(RateLimit())])
async def confirm_email_change(body: EmailTokenRequest) -> UserRead:
    """Apply an email change with the token mailed to the new address."""
    return await account_service.confirm_email_change(body.token)
