"""Settings from the environment (and `.env`), loaded on first use of the `config` proxy, so
`main.py` can choose the environment before anything reads it and tests can reload them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast, get_args

from limits import RateLimitItem, parse_many
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Env = Literal["local", "dev", "prod", "test"]
ENVS: tuple[Env, ...] = get_args(Env)

# A placeholder that is fine on a laptop and refused in prod.
DEFAULT_JWT_SECRET = "change-me-local-development-only-secret"
MIN_PROD_SECRET_LENGTH = 32

EMBEDDED_DB_URL = "sqlite+aiosqlite:///./app.db"
TIER_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
# The most requests one limit may allow per window: a count keeps each request's time, so its
# memory grows with this. A higher rate is a shorter window ("1000/36 seconds" for 100,000/hour).
MAX_LIMIT_REQUESTS = 10_000
# The docker compose stack's published ports (docker/docker-compose.yml).
DEV_WRITER_DB_URL = "postgresql+asyncpg://app:app@127.0.0.1:5432/app"
DEV_READER_DB_URL = "postgresql+asyncpg://app:app@127.0.0.1:5433/app"
DEV_REDIS_URL = "redis://127.0.0.1:6379/0"
# The compose stack's broker, which its workers and Flower use (docker/docker-compose.yml).
DEV_CELERY_BROKER_URL = "redis://127.0.0.1:6380/0"
DEV_CELERY_BACKEND_URL = "redis://127.0.0.1:6380/1"
DEFAULT_FRONTEND_URL = "http://127.0.0.1:3000"


class ConfigError(ValueError):
    """The settings cannot run in the chosen environment; the message names every offender."""


def parse_limit(text: str) -> RateLimitItem:
    """One limit in `limits`' notation ("10/minute"); ValueError for a typo, for several limits
    (only one would count) and for more than MAX_LIMIT_REQUESTS per window."""
    items = parse_many(text)
    if len(items) != 1:
        raise ValueError(f"{text!r} names {len(items)} limits; give one")
    if items[0].amount > MAX_LIMIT_REQUESTS:
        raise ValueError(f"{text!r} allows over {MAX_LIMIT_REQUESTS} requests; shorten the window")
    return items[0]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # `NAME=` in .env or the environment means "use the default", as .env.example shows.
        env_ignore_empty=True,
    )

    ENV: Env = "local"
    DEBUG: bool = False
    APP_HOST: str = "127.0.0.1"
    APP_PORT: int = Field(default=8000, ge=1, le=65535)

    WRITER_DB_URL: str | None = None
    READER_DB_URL: str | None = None
    DB_POOL_SIZE: int = Field(default=10, ge=1)
    # How long a request waits for a pooled connection or a new one before it gets a 503.
    DB_POOL_TIMEOUT: float = Field(default=5.0, gt=0)
    DB_CONNECT_TIMEOUT: float = Field(default=3.0, gt=0)
    # A statement running longer is cancelled (a 503 on a request), and a server silent for
    # longer is given up on: a slow query or a hung server must not hang requests or tasks.
    DB_COMMAND_TIMEOUT: float = Field(default=5.0, gt=0)

    JWT_SECRET_KEY: str = DEFAULT_JWT_SECRET
    JWT_ALGORITHM: Literal["HS256", "HS384", "HS512"] = "HS256"
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=15, ge=1)
    REFRESH_TOKEN_EXPIRE_MINUTES: int = Field(default=60 * 24 * 14, ge=1)

    REDIS_URL: str | None = None
    CACHE_BACKEND: Literal["redis", "memory"] | None = None
    CELERY_BROKER_URL: str | None = None
    CELERY_BACKEND_URL: str | None = None
    CELERY_TASK_ALWAYS_EAGER: bool | None = None
    # user:password[,user:password...]: Flower splits the value at commas, so none in a password.
    FLOWER_BASIC_AUTH: str | None = Field(default=None, pattern=r"^[^:,]+:[^,]+(,[^:,]+:[^,]+)*$")

    READ_YOUR_WRITES_SECONDS: float = Field(default=2.0, ge=0)
    # Proxies whose X-Forwarded-For / -Proto are believed (comma-separated). "*" believes any
    # client about its own address, which turns every per-address limit off: refused in prod.
    FORWARDED_ALLOW_IPS: str = "127.0.0.1"
    # Strict-Transport-Security max-age; 0 sends no HSTS header (serve HTTPS first).
    HSTS_SECONDS: int = Field(default=0, ge=0)
    CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    DOCS_ENABLED: bool | None = None
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    LOG_JSON: bool = False

    # Accounts by email: mail, email tokens, verification, cookie refresh.
    MAIL_BACKEND: Literal["console", "smtp"] | None = None
    MAIL_FROM: str = "no-reply@localhost"
    SMTP_HOST: str = "127.0.0.1"
    SMTP_PORT: int = Field(default=1025, ge=1, le=65535)
    SMTP_USER: str | None = None
    SMTP_PASSWORD: str | None = None
    SMTP_TLS: Literal["none", "starttls", "tls"] = "none"
    FRONTEND_URL: str = DEFAULT_FRONTEND_URL
    EMAIL_TOKEN_EXPIRE_MINUTES: int = Field(default=60, ge=1)
    EMAIL_VERIFICATION_REQUIRED: bool = False
    REFRESH_TOKEN_COOKIE: bool = False
    REFRESH_TOKEN_REUSE_GRACE_SECONDS: float = Field(default=0, ge=0)

    # Lists and HTTP semantics
    MAX_BODY_BYTES: int = Field(default=1024 * 1024, ge=1)
    DOCS_BASIC_AUTH: str | None = Field(default=None, pattern=r"^[^:]+:.+$")

    # Observability: Prometheus metrics, OpenTelemetry traces, Sentry error reports.
    METRICS_ENABLED: bool | None = None  # None: on, except in prod
    METRICS_BASIC_AUTH: str | None = Field(default=None, pattern=r"^[^:]+:.+$")
    OTEL_EXPORTER_OTLP_ENDPOINT: str | None = None
    SENTRY_DSN: str | None = None

    # Rate limits (RateLimit): on or off, the limit of routes without one, the default tiers.
    RATE_LIMIT_ENABLED: bool = True
    RATE_LIMIT_DEFAULT: str = "60/minute"
    # Tier names as the tiers API takes them: migrating creates both.
    RATE_LIMIT_ANONYMOUS_TIER: str = Field(default="anonymous", pattern=TIER_NAME_PATTERN)
    DEFAULT_TIER: str = Field(default="free", pattern=TIER_NAME_PATTERN)

    @field_validator("RATE_LIMIT_DEFAULT")
    @classmethod
    def _parse_limit(cls, value: str) -> str:
        # A typo must stop the server at startup, not fail every limited request.
        parse_limit(value)
        return value

    @field_validator("CORS_ORIGINS", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        # "https://a.example, https://b.example" reads better in an env file than JSON.
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fill_environment_defaults(self) -> Settings:
        if self.ENV == "local":
            self.WRITER_DB_URL = self.WRITER_DB_URL or EMBEDDED_DB_URL
        elif self.ENV == "dev":
            self.WRITER_DB_URL = self.WRITER_DB_URL or DEV_WRITER_DB_URL
            self.READER_DB_URL = self.READER_DB_URL or DEV_READER_DB_URL
            if self.REDIS_URL is None:
                self.REDIS_URL = DEV_REDIS_URL
                self.CELERY_BROKER_URL = self.CELERY_BROKER_URL or DEV_CELERY_BROKER_URL
                self.CELERY_BACKEND_URL = self.CELERY_BACKEND_URL or DEV_CELERY_BACKEND_URL
        self.CACHE_BACKEND = self.CACHE_BACKEND or ("redis" if self.REDIS_URL else "memory")
        self.CELERY_BROKER_URL = self.CELERY_BROKER_URL or self.REDIS_URL
        self.CELERY_BACKEND_URL = self.CELERY_BACKEND_URL or self.CELERY_BROKER_URL
        if self.CELERY_TASK_ALWAYS_EAGER is None:
            self.CELERY_TASK_ALWAYS_EAGER = self.CELERY_BROKER_URL is None
        if self.DOCS_ENABLED is None:
            self.DOCS_ENABLED = self.ENV != "prod"
        if self.METRICS_ENABLED is None:
            self.METRICS_ENABLED = self.ENV != "prod"
        if self.DEBUG and "LOG_LEVEL" not in self.model_fields_set:
            self.LOG_LEVEL = "DEBUG"
        if self.MAIL_BACKEND is None:
            # dev points at the compose stack's Mailpit (SMTP_HOST/SMTP_PORT defaults).
            self.MAIL_BACKEND = "console" if self.ENV == "local" else "smtp"
        return self

    @property
    def reader_db_url(self) -> str:
        return self.READER_DB_URL or self.writer_db_url

    @property
    def writer_db_url(self) -> str:
        if self.WRITER_DB_URL is None:
            raise ConfigError("WRITER_DB_URL is not set")
        return self.WRITER_DB_URL

    def production_problems(self) -> list[str]:
        problems: list[str] = []
        if self.JWT_SECRET_KEY == DEFAULT_JWT_SECRET:
            problems.append("JWT_SECRET_KEY is the default placeholder")
        elif len(self.JWT_SECRET_KEY) < MIN_PROD_SECRET_LENGTH:
            problems.append(f"JWT_SECRET_KEY is shorter than {MIN_PROD_SECRET_LENGTH} characters")
        if not self.WRITER_DB_URL:
            problems.append("WRITER_DB_URL is not set")
        if not self.READER_DB_URL:
            problems.append("READER_DB_URL is not set (set it to WRITER_DB_URL to run without one)")
        if not self.REDIS_URL:
            # Auth state, login throttling and read-your-writes must be shared by all processes.
            problems.append("REDIS_URL is not set")
        elif self.CACHE_BACKEND == "memory":
            problems.append("CACHE_BACKEND=memory keeps a cache per process; use redis")
        if "*" in (ip.strip() for ip in self.FORWARDED_ALLOW_IPS.split(",")):
            problems.append("FORWARDED_ALLOW_IPS is *: name the proxies whose headers to believe")
        if self.WRITER_DB_URL and self.WRITER_DB_URL.startswith("sqlite"):
            problems.append("WRITER_DB_URL points at SQLite, which is for local use only")
        if self.CELERY_TASK_ALWAYS_EAGER:
            # Every task would run inside the request that sends it: no queue, no retries.
            problems.append("CELERY_TASK_ALWAYS_EAGER is on: run workers against a broker")
        if self.MAIL_BACKEND == "console":
            # Its log lines carry reset links: whoever reads the log could take over accounts.
            problems.append("MAIL_BACKEND is console, which writes account links to the log")
        if self.FRONTEND_URL == DEFAULT_FRONTEND_URL:
            problems.append("FRONTEND_URL is not set: links in mail would point at this machine")
        return problems


def load_config(**overrides: Any) -> Settings:
    """Read the settings now (overrides win) and make them current; in prod, refuse unsafe ones."""
    settings = Settings(**overrides)
    if settings.ENV == "prod" and (problems := settings.production_problems()):
        raise ConfigError("refusing to start in prod: " + "; ".join(problems))
    _ConfigProxy.current = settings
    return settings


def reset_config() -> None:
    _ConfigProxy.current = None


class _ConfigProxy:
    current: Settings | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(_ConfigProxy.current or load_config(), name)


config = cast(Settings, _ConfigProxy())
