"""The PostgreSQL server the job-store tests run against, and a fresh schema per test.

The project's machines (CI's included) have one at 127.0.0.1:5432 with trust auth. Elsewhere the
tests skip and say how to run them; under CI=true a missing server fails them instead, so CI can never
pass by skipping the PostgreSQL store."""

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_URL = os.environ.get("TICKETSMITH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
HOW = (
    "run a PostgreSQL server at 127.0.0.1:5432 (trust auth, user postgres, database test), or point"
    " TICKETSMITH_TEST_PG_URL at one, and install the driver: pip install -e '.[postgres]'"
)


@functools.cache
def _unreachable_reason() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return " ".join(str(exc).split())
    return None


def require_postgres() -> str:
    """The test server's URL; skips the test when there is none, or fails it under CI=true."""
    reason = _unreachable_reason()
    if reason is not None:
        message = f"no PostgreSQL for the job-store tests ({reason}): {HOW}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return PG_URL


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A schema no other test uses, dropped afterwards: tests stay independent and can run in parallel."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:16]}"
    try:
        yield name
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def terminate_backends(url: str, schema: str) -> int:
    """Cut every connection a store of `schema` holds (as a failover or a network cut would)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND datname = current_database()"
            " AND application_name = %s",
            (f"ticketsmith-{schema}",),
        ).fetchone()
    return int(row[0]) if row else 0
