"""The job store on PostgreSQL: one queue shared by workers on several machines.

It keeps the guarantees of the SQLite store (connectors/job_store.py) with PostgreSQL's own tools:
a claim is one `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)`, so concurrent workers
never wait on or take the same job; every lease is set and checked against the database's clock
(`now()`), never a box's own, so machines with drifting clocks still agree when a lease has run
out. Tests move that clock with `clock_offset_s` instead of sleeping.

psycopg 3 with its pool rather than a PostgreSQL task-queue library (procrastinate, pgqueuer): those
own the worker loop and model a job as a function call, while our contract (a lease the writer must
still hold, the audit record committed with the completion, ITSM cursors, dead letters an operator
requeues) fits in a dozen SQL statements and would have to be bent around theirs.

The schema is versioned (`schema_migrations`) and migrated at start-up under an advisory lock, so two
workers starting at once apply each migration once; a schema newer than this code is refused."""

import logging
import random
import re
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ticketsmith.connectors.job_store import (
    AuditEntry,
    AuditRecord,
    FailureKind,
    FinalState,
    Job,
    JobDetail,
    JobError,
    JobState,
    LeaseLost,
    RetryPolicy,
    StoreUnavailable,
    plan_failure,
)
from ticketsmith.runtime.errors import ConfigError

T = TypeVar("T")
Connection = psycopg.Connection[dict[str, Any]]

# The store's clock: the database's transaction time, moved by the offset tests give it.
NOW = "(now() + %(offset)s)"

# Each entry is one schema version; append, never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id BIGSERIAL PRIMARY KEY,
        source TEXT NOT NULL,
        external_id TEXT NOT NULL,
        payload JSONB NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('new', 'processing', 'done', 'needs_review', 'failed', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until TIMESTAMPTZ,
        claim_token UUID,
        next_attempt_at TIMESTAMPTZ NOT NULL,
        last_error TEXT,
        result JSONB,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        UNIQUE (source, external_id)
    );
    CREATE INDEX jobs_ready ON jobs (next_attempt_at, id) WHERE state IN ('new', 'failed');
    CREATE INDEX jobs_ready_by_source ON jobs (source, next_attempt_at, id) WHERE state IN ('new', 'failed');
    CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'processing';
    CREATE INDEX jobs_claim_token ON jobs (claim_token) WHERE state = 'processing';
    CREATE INDEX jobs_listing ON jobs (state, source, updated_at);
    CREATE TABLE cursors (source TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        at TIMESTAMPTZ NOT NULL,
        record JSONB NOT NULL
    );
    CREATE INDEX audit_job ON audit (job_id);
    CREATE TABLE job_errors (
        id BIGSERIAL PRIMARY KEY,
        job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        at TIMESTAMPTZ NOT NULL,
        attempt INTEGER NOT NULL,
        error TEXT NOT NULL
    );
    CREATE INDEX job_errors_job ON job_errors (job_id);
    """,
    # 2: transient failures give their attempt back; they are counted and timed instead (the retry budget)
    """
    ALTER TABLE jobs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0, ADD COLUMN failing_since TIMESTAMPTZ;
    """,
)

_JOB_COLUMNS = (
    "id, source, external_id, payload, state, attempts, failures,"
    " extract(epoch FROM failing_since)::float8 AS failing_since, lease_owner,"
    " extract(epoch FROM lease_until)::float8 AS lease_until,"
    " extract(epoch FROM next_attempt_at)::float8 AS next_attempt_at, last_error, result,"
    " extract(epoch FROM created_at)::float8 AS created_at, extract(epoch FROM updated_at)::float8 AS updated_at"
)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# The store says once per outage that the database is gone (the worker loop does); the pool would
# repeat it on every reconnection attempt.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


class SchemaTooNew(ConfigError):
    """The database was migrated by a newer ticketsmith: this code would misread it."""


def one_line(exc: BaseException) -> str:
    """psycopg's messages span lines ("connection refused\\n\\tIs the server running..."): one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def migrate(conn: Connection, schema: str) -> int:
    """Bring `schema` to the newest version; returns it. The advisory lock makes concurrent start-ups
    take turns: the second finds the work done."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ticketsmith.migrate:{schema}",))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
        )
        row = conn.execute("SELECT coalesce(max(version), 0) AS version FROM schema_migrations").fetchone()
        current = int(row["version"]) if row else 0
        if current > len(MIGRATIONS):
            raise SchemaTooNew(
                f"the job store schema {schema!r} is at version {current}, newer than this ticketsmith knows"
                f" ({len(MIGRATIONS)}): upgrade ticketsmith on this machine, or give it its own `store.schema`"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            conn.execute(MIGRATIONS[version - 1])
            conn.execute("INSERT INTO schema_migrations VALUES (%s, now())", (version,))
    return len(MIGRATIONS)


class PostgresJobStore:
    """JobStore on a PostgreSQL database shared by every worker; thread-safe (a small connection pool)."""

    def __init__(
        self,
        url: str,
        password: str | None = None,
        schema: str = "ticketsmith",
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        clock_offset_s: float = 0.0,
        pool_size: int = 4,
        connect_timeout_s: float = 5.0,
    ) -> None:
        if not _SCHEMA_NAME.match(schema):
            raise ConfigError(f"store schema {schema!r}: use lower-case letters, digits and _")
        self.policy = policy or RetryPolicy()
        self.clock_offset_s = clock_offset_s
        self.schema = schema
        self._rng = rng or random.Random()
        where = _redacted(url)
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "application_name": f"ticketsmith-{schema}",  # pg_stat_activity shows which queue a connection serves
            "connect_timeout": max(1, round(connect_timeout_s)),
            "options": f"-c search_path={schema}",
            "row_factory": dict_row,
        }
        if password is not None:
            kwargs["password"] = password
        try:
            with psycopg.connect(url, **kwargs) as conn:
                migrate(conn, schema)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"the job store at {where} cannot be used: {one_line(exc)}") from None
        self._url, self._kwargs, self._where = url, kwargs, where
        self._pool_size, self._timeout_s = pool_size, connect_timeout_s
        self._pool_lock = threading.Lock()
        self._pool = self._open_pool()

    def _open_pool(self) -> "ConnectionPool[Connection]":
        return ConnectionPool(
            self._url,
            kwargs=self._kwargs,
            min_size=1,
            max_size=self._pool_size,
            timeout=self._timeout_s,
            check=ConnectionPool.check_connection,  # a connection cut while idle is replaced, not used
            name=f"ticketsmith-jobs-{self.schema}",
            open=True,
        )

    def _renew_pool(self, broken: "ConnectionPool[Connection]") -> None:
        """Start the next try after an outage from a fresh pool: the old one's reconnection backoff
        (1 s, doubling up to minutes) would otherwise keep a worker waiting long after the database is
        back."""
        with self._pool_lock:
            if self._pool is not broken:
                return  # another thread renewed it already
            self._pool = self._open_pool()
        broken.close(timeout=0)

    def close(self) -> None:
        self._pool.close()

    def _run(self, operation: Callable[[Connection], T]) -> T:
        """Run `operation` in one transaction. A connection that breaks under it is retried once on a
        fresh one (every operation is safe to repeat: a repeated write finds the lease gone and raises
        LeaseLost); a second failure means the database is gone: StoreUnavailable."""
        for attempt in (1, 2):
            pool = self._pool
            try:
                with pool.connection() as conn, conn.transaction():
                    return operation(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # the connection, not the query
                if attempt == 2:
                    self._renew_pool(pool)
                    raise StoreUnavailable(f"the job store at {self._where} is unavailable: {one_line(exc)}") from None
        raise AssertionError("unreachable")

    def _params(self, **values: Any) -> dict[str, Any]:
        return {"offset": timedelta(seconds=self.clock_offset_s), **values}

    @staticmethod
    def _seconds(seconds: float) -> timedelta:
        return timedelta(seconds=seconds)

    def _update_owned(self, conn: Connection, assignments: str, job_id: int, worker: str, **values: Any) -> None:
        cursor = conn.execute(
            f"UPDATE jobs SET {assignments} WHERE id = %(job_id)s AND lease_owner = %(worker)s"
            f" AND state = 'processing' AND lease_until >= {NOW}",
            self._params(job_id=job_id, worker=worker, **values),
        )
        if cursor.rowcount != 1:
            raise LeaseLost(f"job {job_id} is no longer leased to {worker}")

    def now(self) -> float:
        """The store's clock in epoch seconds: the database's, plus the offset."""

        def read(conn: Connection) -> float:
            row = conn.execute(f"SELECT extract(epoch FROM {NOW})::float8 AS now", self._params()).fetchone()
            assert row is not None
            return float(row["now"])

        return self._run(read)

    def enqueue(self, source: str, external_id: str, payload: dict[str, Any]) -> bool:
        """Add a job; False when this ticket is already known (seen twice is still one job)."""

        def insert(conn: Connection) -> bool:
            cursor = conn.execute(
                "INSERT INTO jobs (source, external_id, payload, state, next_attempt_at, created_at, updated_at)"
                f" VALUES (%(source)s, %(external_id)s, %(payload)s, 'new', {NOW}, {NOW}, {NOW})"
                " ON CONFLICT (source, external_id) DO NOTHING",
                self._params(source=source, external_id=external_id, payload=Jsonb(payload)),
            )
            return cursor.rowcount == 1

        return self._run(insert)

    def claim(self, worker: str, lease_s: float, sources: tuple[str, ...] | None = None) -> Job | None:
        """Take a ready job (of `sources`, or of any): first one left behind by an expired lease, else the
        oldest new one or one due for a retry. Rows another worker is claiming are skipped, not waited for.
        Each kind is found through its own partial index, so a claim costs the same with a backlog of
        100,000 jobs as with ten (one query ordering both kinds together would sort them all)."""
        if not sources:
            only = ""
        elif len(sources) == 1:
            only = " AND source = %(source)s"  # served by jobs_ready_by_source
        else:
            only = " AND source = ANY(%(sources)s)"

        # A claim whose reply was lost with its connection may still have committed: its retry looks for
        # the job this token took before taking another, so the lost one does not sit leased for nothing
        # and burn an attempt.
        token = uuid.uuid4()
        tries = 0

        def take(conn: Connection) -> Job | None:
            nonlocal tries
            tries += 1
            if tries > 1:
                taken = conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE claim_token = %s AND state = 'processing'"
                    " AND lease_owner = %s",
                    (token, worker),
                ).fetchone()
                if taken is not None:
                    return Job.model_validate(taken)
            while True:
                row = conn.execute(
                    f"UPDATE jobs SET state = 'processing', attempts = attempts + 1, lease_owner = %(worker)s,"
                    f" lease_until = {NOW} + %(lease)s, updated_at = {NOW}, claim_token = %(token)s"
                    " WHERE id = coalesce("
                    f"(SELECT id FROM jobs WHERE state = 'processing' AND lease_until < {NOW}{only}"
                    " ORDER BY lease_until LIMIT 1 FOR UPDATE SKIP LOCKED),"
                    f" (SELECT id FROM jobs WHERE state IN ('new', 'failed') AND next_attempt_at <= {NOW}{only}"
                    f" ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)) RETURNING {_JOB_COLUMNS}",
                    self._params(
                        worker=worker,
                        token=token,
                        lease=self._seconds(lease_s),
                        source=sources[0] if sources else None,
                        sources=list(sources or ()),
                    ),
                ).fetchone()
                if row is None:
                    return None
                job = Job.model_validate(row)
                if job.attempts <= self.policy.max_attempts:
                    return job
                # every earlier attempt died with its worker: dead-letter it instead of crashing again
                error = f"gave up: {job.attempts - 1} attempts never finished"
                conn.execute(
                    "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_until = NULL, last_error = %(error)s"
                    " WHERE id = %(job_id)s",
                    {"error": error, "job_id": job.id},
                )
                conn.execute(
                    f"INSERT INTO job_errors (job_id, at, attempt, error) VALUES (%(job_id)s, {NOW}, %(attempt)s,"
                    " %(error)s)",
                    self._params(job_id=job.id, attempt=job.attempts - 1, error=error),
                )

        return self._run(take)

    def extend(self, job_id: int, worker: str, lease_s: float) -> None:
        self._run(
            lambda conn: self._update_owned(
                conn,
                f"lease_until = {NOW} + %(lease)s, updated_at = {NOW}",
                job_id,
                worker,
                lease=self._seconds(lease_s),
            )
        )

    def complete(self, job_id: int, worker: str, state: FinalState, result: dict[str, Any], audit: AuditRecord) -> None:
        """Finish a job and write its audit record, in one transaction."""

        def finish(conn: Connection) -> None:
            self._update_owned(
                conn,
                f"state = %(state)s, result = %(result)s, lease_owner = NULL, lease_until = NULL, updated_at = {NOW}",
                job_id,
                worker,
                state=state,
                result=Jsonb(result),
            )
            conn.execute(
                f"INSERT INTO audit (job_id, at, record) VALUES (%(job_id)s, {NOW}, %(record)s)",
                self._params(job_id=job_id, record=Jsonb(audit.model_dump(mode="json"))),
            )

        self._run(finish)

    def fail(
        self, job_id: int, worker: str, error: str, retry_after: float | None = None, kind: FailureKind = "error"
    ) -> JobState:
        """Record a failure: retried later (backoff, Retry-After) or dead, as `kind` decides (`plan_failure`,
        on the database's clock)."""

        def record(conn: Connection) -> JobState:
            row = conn.execute(
                "SELECT attempts, failures, extract(epoch FROM failing_since)::float8 AS failing_since,"
                f" extract(epoch FROM {NOW})::float8 AS now FROM jobs WHERE id = %(job_id)s FOR UPDATE",
                self._params(job_id=job_id),
            ).fetchone()
            if row is None:
                raise LeaseLost(f"job {job_id} does not exist")
            attempts = int(row["attempts"])
            claimed = (attempts, int(row["failures"]), row["failing_since"])
            plan = plan_failure(self.policy, self._rng, kind, claimed, float(row["now"]), error, retry_after)
            self._update_owned(
                conn,
                "state = %(state)s, attempts = %(attempts)s, failures = %(failures)s,"
                " failing_since = to_timestamp(%(since)s::float8), last_error = %(error)s,"
                f" next_attempt_at = {NOW} + %(delay)s, lease_owner = NULL, lease_until = NULL, updated_at = {NOW}",
                job_id,
                worker,
                state=plan.state,
                attempts=plan.attempts,
                failures=plan.failures,
                since=plan.failing_since,
                error=plan.error,
                delay=self._seconds(plan.delay_s),
            )
            conn.execute(
                f"INSERT INTO job_errors (job_id, at, attempt, error) VALUES (%(job_id)s, {NOW}, %(attempt)s,"
                " %(error)s)",
                self._params(job_id=job_id, attempt=attempts, error=plan.error),
            )
            return plan.state

        return self._run(record)

    def release(self, job_id: int, worker: str) -> None:
        """Give a job back untouched (e.g. on SIGTERM): the attempt is not counted."""
        self._run(
            lambda conn: self._update_owned(
                conn,
                f"state = 'new', attempts = attempts - 1, lease_owner = NULL, lease_until = NULL, updated_at = {NOW}",
                job_id,
                worker,
            )
        )

    def get(self, source: str, external_id: str) -> Job | None:
        row = self._run(
            lambda conn: conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE source = %s AND external_id = %s", (source, external_id)
            ).fetchone()
        )
        return Job.model_validate(row) if row else None

    def counts(self) -> dict[str, int]:
        rows = self._run(lambda conn: conn.execute("SELECT state, count(*) AS n FROM jobs GROUP BY state").fetchall())
        return {row["state"]: int(row["n"]) for row in rows}

    def get_cursor(self, source: str) -> str | None:
        """Where polling a source stopped: tickets before it are all in the store."""
        row = self._run(lambda conn: conn.execute("SELECT value FROM cursors WHERE source = %s", (source,)).fetchone())
        return str(row["value"]) if row else None

    def set_cursor(self, source: str, value: str) -> None:
        self._run(
            lambda conn: conn.execute(
                f"INSERT INTO cursors (source, value, updated_at) VALUES (%(source)s, %(value)s, {NOW})"
                " ON CONFLICT (source) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                self._params(source=source, value=value),
            )
        )

    def audit_records(self, job_id: int) -> list[AuditRecord]:
        rows = self._run(
            lambda conn: conn.execute("SELECT record FROM audit WHERE job_id = %s ORDER BY id", (job_id,)).fetchall()
        )
        return [AuditRecord.model_validate(row["record"]) for row in rows]

    def list_jobs(self, state: JobState | None = None, source: str | None = None, limit: int = 100) -> list[Job]:
        """The most recently changed jobs first, optionally of one state and one source."""
        rows = self._run(
            lambda conn: conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE (%(state)s::text IS NULL OR state = %(state)s)"
                " AND (%(source)s::text IS NULL OR source = %(source)s) ORDER BY updated_at DESC, id DESC"
                " LIMIT %(limit)s",
                {"state": state, "source": source, "limit": limit},
            ).fetchall()
        )
        return [Job.model_validate(row) for row in rows]

    def show(self, job_id: int) -> JobDetail | None:
        def read(conn: Connection) -> JobDetail | None:
            row = conn.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,)).fetchone()
            if row is None:
                return None
            errors = conn.execute(
                "SELECT extract(epoch FROM at)::float8 AS at, attempt, error FROM job_errors WHERE job_id = %s"
                " ORDER BY id",
                (job_id,),
            ).fetchall()
            audit = conn.execute(
                "SELECT extract(epoch FROM at)::float8 AS at, record FROM audit WHERE job_id = %s ORDER BY id",
                (job_id,),
            ).fetchall()
            return JobDetail(
                job=Job.model_validate(row),
                errors=[JobError.model_validate(error) for error in errors],
                audit=[AuditEntry.model_validate(entry) for entry in audit],
            )

        return self._run(read)

    def requeue(self, job_id: int | None = None, source: str | None = None) -> int:
        """Give dead jobs (one, or every one of a source) a fresh set of attempts; returns how many."""
        if job_id is None and source is None:
            raise ValueError("requeue needs a job id or a source")
        return self._run(
            lambda conn: (
                conn.execute(
                    "UPDATE jobs SET state = 'new', attempts = 0, failures = 0, failing_since = NULL,"
                    f" next_attempt_at = {NOW}, lease_owner = NULL, lease_until = NULL, updated_at = {NOW}"
                    " WHERE state = 'dead'"
                    " AND (%(job_id)s::bigint IS NULL OR id = %(job_id)s)"
                    " AND (%(source)s::text IS NULL OR source = %(source)s)",
                    self._params(job_id=job_id, source=source),
                ).rowcount
            )
        )

    def purge(self, older_than_s: float, source: str | None = None) -> int:
        """Delete finished jobs (done, needs_review) unchanged for `older_than_s`, with their audit
        records and errors; returns how many jobs went."""

        return self._run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM jobs WHERE state IN ('done', 'needs_review')"  # audit and errors cascade
                    f" AND updated_at < {NOW} - %(age)s AND (%(source)s::text IS NULL OR source = %(source)s)",
                    self._params(age=self._seconds(older_than_s), source=source),
                ).rowcount
            )
        )


def _redacted(url: str) -> str:
    """The URL as it may appear in a message: no password, even one given against the advice."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", url)
