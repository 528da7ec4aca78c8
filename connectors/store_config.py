"""Which job store a worker uses: SQLite in its state folder unless the YAML names a PostgreSQL one.

    store:
      url: postgresql://ticketsmith@db.example.com:5432/ticketsmith
      password: {env: TICKETSMITH_DB_PASSWORD}   # or {file: /etc/ticketsmith/db-password}

The password is a `Secret` like every other (never in the YAML, so never in the URL either). psycopg
is imported only when a URL is given, so the embedded install needs no PostgreSQL driver."""

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ticketsmith.connectors.itsm import Secret
from ticketsmith.connectors.job_store import JobStore, RetryPolicy, SqliteJobStore
from ticketsmith.runtime.errors import ConfigError


class StoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: str = Field(description="postgresql://user@host[:port]/database (the password goes in `password`)")
    password: Secret | None = None
    schema_name: str = Field(
        "ticketsmith",
        alias="schema",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema holding the tables; workers that share a queue share it",
    )
    pool_size: int = Field(4, ge=1, le=64, description="connections per worker process")
    connect_timeout_s: float = Field(5.0, gt=0, description="how long to wait for the database")

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql://user@host/database URL (leave `store` out for SQLite)")
        if parts.password is not None:
            raise ValueError("must not hold a password: give it as `password: {env: VAR}` or `{file: path}`")
        return url


def open_store(settings: StoreSettings | None, state_dir: Path, policy: RetryPolicy | None = None) -> JobStore:
    """The configured store, migrated and reachable, or a TicketsmithError worth one line: the worker
    calls this before the model loads, so a wrong URL or a database that is down costs no minutes.
    `policy` is the YAML's `retry:` section (it matters to the stores that fail jobs: the worker's)."""
    if settings is None:
        return SqliteJobStore(state_dir / "jobs.db", policy)
    try:
        from ticketsmith.connectors.pg_job_store import PostgresJobStore
    except ImportError:
        raise ConfigError("`store.url` needs the PostgreSQL driver: pip install 'ticketsmith[postgres]'") from None
    password = settings.password.get() if settings.password is not None else None
    return PostgresJobStore(
        settings.url,
        password,
        schema=settings.schema_name,
        policy=policy,
        pool_size=settings.pool_size,
        connect_timeout_s=settings.connect_timeout_s,
    )
