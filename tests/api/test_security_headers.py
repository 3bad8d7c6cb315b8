from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient

from core.config import load_config


async def test_responses_carry_security_headers_without_hsts_by_default(
    client: AsyncClient,
) -> None:
    for response in (await client.get("/health"), await client.get("/nope")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "strict-transport-security" not in response.headers


@pytest.fixture
async def configured_client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AsyncClient]:
    """An app built with HSTS and an explicit CORS origin list."""
    from app.server import create_app

    monkeypatch.setenv("HSTS_SECONDS", "31536000")
    monkeypatch.setenv("CORS_ORIGINS", "https://app.example, https://admin.example")
    load_config()
    try:
        app = create_app()

        async def explode() -> None:
            raise RuntimeError("a bug")

        app.add_api_route("/test-only/explode", explode)
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://t") as http:
            yield http
    finally:
        monkeypatch.undo()
        load_config()


async def test_hsts_and_cors_follow_the_settings(configured_client: AsyncClient) -> None:
    response = await configured_client.get("/health", headers={"Origin": "https://app.example"})
    preflight = await configured_client.options(
        "/api/v1/users/me",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    stranger = await configured_client.get("/health", headers={"Origin": "https://evil.example"})

    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert preflight.status_code == 200
    assert "access-control-allow-origin" not in stranger.headers


async def test_a_500_carries_hsts_and_cors_too(configured_client: AsyncClient) -> None:
    # Without CORS headers a browser hides the error document from the page that asked.
    response = await configured_client.get(
        "/test-only/explode", headers={"Origin": "https://app.example"}
    )

    assert response.status_code == 500
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_a_wildcard_origin_never_comes_with_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.middleware.cors import CORSMiddleware

    from app.server import create_app

    monkeypatch.setenv("CORS_ORIGINS", "*")
    load_config()
    try:
        app = create_app()
        cors = next(m for m in app.user_middleware if m.cls == CORSMiddleware)  # type: ignore[comparison-overlap]
        assert cors.kwargs["allow_origins"] == ["*"]
        assert cors.kwargs["allow_credentials"] is False
    finally:
        monkeypatch.undo()
        load_config()
