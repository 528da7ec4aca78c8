"""The durable job store: every ticket seen becomes a job, claimed under a lease, so a worker killed
at any instant leaves its job to be claimed again once the lease runs out.

A claim counts as an attempt, so a ticket that crashes the worker every time ends dead-lettered
after `max_attempts` instead of looping forever. A failure says what it costs (`FailureKind`): an
outage of the ITSM system (5xx, 429, a timeout) gives the attempt back and is retried with capped
backoff for a time budget (24 h by default), so a maintenance window kills no ticket; a paused source
(credentials rejected) costs nothing at all; only a permanent failure (404, a value the system
rejects) dead-letters at once. Only the lease holder may finish or fail a job: a
worker whose lease ran out (and whose job another worker has taken) gets LeaseLost, never a second
write. `JobStore` is the interface; SQLite in WAL mode is the embedded backend, and PostgreSQL
(connectors/pg_job_store.py) implements the same protocol for several workers on several machines.
Operators see and mend the queue through the same interface (`ticketsmith jobs`): list, show,
requeue dead jobs, purge finished ones."""

import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ticketsmith.runtime.errors import TicketsmithError

JobState = Literal["new", "processing", "done", "needs_review", "failed", "dead"]
FinalState = Literal["done", "needs_review"]
JOB_STATES: tuple[JobState, ...] = ("new", "processing", "done", "needs_review", "failed", "dead")
# What a failure costs the job, by its cause:
# - error: an attempt (dead after max_attempts): a failure nobody classified;
# - permanent: dead now, retrying cannot help (a 404, a value the system rejects, text that cannot be triaged);
# - transient: the system's fault (5xx, 429, a timeout): the attempt is given back, and the job is retried with
#   capped backoff until `transient_budget_s` after its first transient failure;
# - paused: its source is paused (credentials rejected): neither an attempt nor budget; ready again at once,
#   and the circuit breaker decides when its source is tried again.
FailureKind = Literal["error", "permanent", "transient", "paused"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('new', 'processing', 'done', 'needs_review', 'failed', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    failing_since REAL,
    lease_owner TEXT,
    lease_until REAL,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    result TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (source, external_id)
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS cursors (
    source TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    at REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS job_errors (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs (id),
    at REAL NOT NULL,
    attempt INTEGER NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_errors_job ON job_errors (job_id);
CREATE INDEX IF NOT EXISTS audit_job ON audit (job_id);
"""


class LeaseLost(Exception):
    """The job is no longer this worker's: its lease ran out and it may be in other hands."""


class StoreUnavailable(TicketsmithError):
    """The job store cannot be reached (a database server down or unreachable). The worker pauses and
    retries; at start-up it is a one-line error, since nothing can work without the store."""


class Job(BaseModel):
    id: int
    source: str
    external_id: str
    payload: dict[str, Any]
    state: JobState
    attempts: int
    failures: int = 0  # transient failures in a row (they set the backoff, not the attempts)
    failing_since: float | None = None  # the first of them: the transient budget runs from here
    lease_owner: str | None
    lease_until: float | None
    next_attempt_at: float
    last_error: str | None
    result: dict[str, Any] | None
    created_at: float = 0.0
    updated_at: float = 0.0


class AuditRecord(BaseModel):
    """One decision: what went in, which model decided, what came out and where it was written."""

    input_hash: str
    model: str
    output: dict[str, Any]
    confidences: dict[str, float] = Field(default_factory=dict)
    written_to: list[str] = Field(default_factory=list)
    # shadow: the source's `mode: shadow` wrote nothing back on purpose (written_to is empty).
    mode: Literal["live", "shadow"] = "live"


class AuditEntry(BaseModel):
    at: float
    record: AuditRecord


class JobError(BaseModel):
    """One failed attempt, kept so that an operator sees the history, not only the last error."""

    at: float
    attempt: int
    error: str


class JobDetail(BaseModel):
    job: Job
    errors: list[JobError]
    audit: list[AuditEntry]


class RetryPolicy(BaseModel):
    """How failed tickets are retried: the worker YAML's `retry:` section."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(5, ge=1, description="claims ending without a result (crashes, errors) before dead")
    base_delay_s: float = Field(2.0, gt=0, description="the first retry's delay; it doubles per failure")
    max_delay_s: float = Field(300.0, gt=0, description="the cap of the exponential backoff")
    jitter: float = Field(0.25, ge=0, le=1)
    transient_budget_s: float = Field(
        86_400.0, gt=0, description="how long transient failures (5xx, 429, timeouts) are retried, from the first"
    )

    def delay(self, failures: int, retry_after: float | None, rng: random.Random) -> float:
        """Exponential backoff with jitter; a server's Retry-After wins when it asks for longer."""
        backoff: float = min(self.max_delay_s, self.base_delay_s * 2.0 ** max(0, failures - 1))
        backoff *= 1 + rng.uniform(-self.jitter, self.jitter)
        return max(backoff, retry_after or 0.0)


class FailurePlan(NamedTuple):
    """What one failure does to its job: both stores apply the same plan (`plan_failure`)."""

    state: JobState
    attempts: int
    failures: int
    failing_since: float | None
    delay_s: float
    error: str


def plan_failure(
    policy: RetryPolicy,
    rng: random.Random,
    kind: FailureKind,
    job: tuple[int, int, float | None],
    now: float,
    error: str,
    retry_after: float | None,
) -> FailurePlan:
    """The retry rules. `job` is (attempts, failures, failing_since) as claimed; attempts include this claim."""
    attempts, failures, since = job
    if kind == "permanent":
        return FailurePlan("dead", attempts, failures, since, 0.0, error)
    if kind == "paused":  # the source waits, not the ticket: it costs nothing
        return FailurePlan("failed", attempts - 1, failures, since, retry_after or 0.0, error)
    if kind == "transient":
        since = now if since is None else since
        if now - since >= policy.transient_budget_s:
            hours = (now - since) / 3600
            error = f"{error} (transient failures for {hours:.1f} h, over the retry budget: gave up)"
            return FailurePlan("dead", attempts - 1, failures + 1, since, 0.0, error)
        delay = policy.delay(failures + 1, retry_after, rng)
        return FailurePlan("failed", attempts - 1, failures + 1, since, delay, error)
    state: JobState = "dead" if attempts >= policy.max_attempts else "failed"
    return FailurePlan(state, attempts, failures, since, policy.delay(attempts, retry_after, rng), error)


class JobStore(Protocol):
    def enqueue(self, source: str, external_id: str, payload: dict[str, Any]) -> bool: ...
    def claim(self, worker: str, lease_s: float, sources: tuple[str, ...] | None = None) -> Job | None: ...
    def extend(self, job_id: int, worker: str, lease_s: float) -> None: ...
    def complete(
        self, job_id: int, worker: str, state: FinalState, result: dict[str, Any], audit: AuditRecord
    ) -> None: ...
    def fail(
        self, job_id: int, worker: str, error: str, retry_after: float | None = None, kind: FailureKind = "error"
    ) -> JobState: ...
    def release(self, job_id: int, worker: str) -> None: ...
    def get(self, source: str, external_id: str) -> Job | None: ...
    def counts(self) -> dict[str, int]: ...
    def get_cursor(self, source: str) -> str | None: ...
    def set_cursor(self, source: str, value: str) -> None: ...
    def audit_records(self, job_id: int) -> list[AuditRecord]: ...
    def close(self) -> None: ...
    # for operators (`ticketsmith jobs`)
    def now(self) -> float: ...
    def list_jobs(self, state: JobState | None = None, source: str | None = None, limit: int = 100) -> list[Job]: ...
    def show(self, job_id: int) -> JobDetail | None: ...
    def requeue(self, job_id: int | None = None, source: str | None = None) -> int: ...
    def purge(self, older_than_s: float, source: str | None = None) -> int: ...


class SqliteJobStore:
    """JobStore on one SQLite file in WAL mode; safe across threads and processes on one machine."""

    def __init__(
        self,
        path: Path,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._rng = rng or random.Random()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a finished job survives a power cut
        self._db.executescript(_SCHEMA)
        self._upgrade()

    def _upgrade(self) -> None:
        """Add the columns newer code needs to a jobs.db an older ticketsmith made (idempotent)."""
        with self._transaction() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
            if "failures" not in columns:
                db.execute("ALTER TABLE jobs ADD COLUMN failures INTEGER NOT NULL DEFAULT 0")
            if "failing_since" not in columns:
                db.execute("ALTER TABLE jobs ADD COLUMN failing_since REAL")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front (BEGIN IMMEDIATE) so concurrent claims serialise."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _update_owned(
        self, db: sqlite3.Connection, sql: str, params: tuple[Any, ...], job_id: int, worker: str
    ) -> None:
        cursor = db.execute(
            sql + " WHERE id = ? AND lease_owner = ? AND state = 'processing' AND lease_until >= ?",
            (*params, job_id, worker, self._clock()),
        )
        if cursor.rowcount != 1:
            raise LeaseLost(f"job {job_id} is no longer leased to {worker}")

    def enqueue(self, source: str, external_id: str, payload: dict[str, Any]) -> bool:
        """Add a job; False when this ticket is already known (seen twice is still one job)."""
        now = self._clock()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO jobs (source, external_id, payload, state, next_attempt_at, created_at, updated_at)"
                " VALUES (?, ?, ?, 'new', ?, ?, ?) ON CONFLICT (source, external_id) DO NOTHING",
                (source, external_id, json.dumps(payload), now, now, now),
            )
        return cursor.rowcount == 1

    def claim(self, worker: str, lease_s: float, sources: tuple[str, ...] | None = None) -> Job | None:
        """Take the oldest ready job (of `sources`, or of any): new, due for a retry, or left behind by
        an expired lease."""
        only = f" AND source IN ({', '.join('?' * len(sources))})" if sources else ""
        while True:
            now = self._clock()
            with self._transaction() as db:
                row = db.execute(
                    "UPDATE jobs SET state = 'processing', attempts = attempts + 1, lease_owner = ?,"
                    " lease_until = ?, updated_at = ? WHERE id = (SELECT id FROM jobs WHERE"
                    " ((state IN ('new', 'failed') AND next_attempt_at <= ?) OR (state = 'processing'"
                    f" AND lease_until < ?)){only} ORDER BY next_attempt_at, id LIMIT 1) RETURNING *",
                    (worker, now + lease_s, now, now, now, *(sources or ())),
                ).fetchone()
                if row is None:
                    return None
                job = _job(row)
                if job.attempts <= self.policy.max_attempts:
                    return job
                # every earlier attempt died with its worker: dead-letter it instead of crashing again
                error = f"gave up: {job.attempts - 1} attempts never finished"
                db.execute(
                    "UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_until = NULL, last_error = ?"
                    " WHERE id = ?",
                    (error, job.id),
                )
                db.execute(
                    "INSERT INTO job_errors (job_id, at, attempt, error) VALUES (?, ?, ?, ?)",
                    (job.id, now, job.attempts - 1, error),
                )

    def extend(self, job_id: int, worker: str, lease_s: float) -> None:
        now = self._clock()
        with self._transaction() as db:
            self._update_owned(
                db, "UPDATE jobs SET lease_until = ?, updated_at = ?", (now + lease_s, now), job_id, worker
            )

    def complete(self, job_id: int, worker: str, state: FinalState, result: dict[str, Any], audit: AuditRecord) -> None:
        """Finish a job and write its audit record, atomically."""
        now = self._clock()
        with self._transaction() as db:
            self._update_owned(
                db,
                "UPDATE jobs SET state = ?, result = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?",
                (state, json.dumps(result), now),
                job_id,
                worker,
            )
            db.execute(
                "INSERT INTO audit (job_id, at, record) VALUES (?, ?, ?)", (job_id, now, audit.model_dump_json())
            )

    def fail(
        self, job_id: int, worker: str, error: str, retry_after: float | None = None, kind: FailureKind = "error"
    ) -> JobState:
        """Record a failure: retried later (backoff, Retry-After) or dead, as `kind` decides (`plan_failure`)."""
        now = self._clock()
        with self._transaction() as db:
            row = db.execute("SELECT attempts, failures, failing_since FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise LeaseLost(f"job {job_id} does not exist")
            plan = plan_failure(
                self.policy, self._rng, kind, (int(row[0]), int(row[1]), row[2]), now, error, retry_after
            )
            self._update_owned(
                db,
                "UPDATE jobs SET state = ?, attempts = ?, failures = ?, failing_since = ?, last_error = ?,"
                " next_attempt_at = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?",
                (plan.state, plan.attempts, plan.failures, plan.failing_since, plan.error, now + plan.delay_s, now),
                job_id,
                worker,
            )
            db.execute(
                "INSERT INTO job_errors (job_id, at, attempt, error) VALUES (?, ?, ?, ?)",
                (job_id, now, row[0], plan.error),
            )
        return plan.state

    def release(self, job_id: int, worker: str) -> None:
        """Give a job back untouched (e.g. on SIGTERM): the attempt is not counted."""
        with self._transaction() as db:
            self._update_owned(
                db,
                "UPDATE jobs SET state = 'new', attempts = attempts - 1, lease_owner = NULL, lease_until = NULL,"
                " updated_at = ?",
                (self._clock(),),
                job_id,
                worker,
            )

    def get(self, source: str, external_id: str) -> Job | None:
        row = self._db.execute(
            "SELECT * FROM jobs WHERE source = ? AND external_id = ?", (source, external_id)
        ).fetchone()
        return _job(row) if row else None

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {state: count for state, count in rows}

    def get_cursor(self, source: str) -> str | None:
        """Where polling a source stopped: tickets before it are all in the store."""
        row = self._db.execute("SELECT value FROM cursors WHERE source = ?", (source,)).fetchone()
        return str(row[0]) if row else None

    def set_cursor(self, source: str, value: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO cursors (source, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (source) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (source, value, self._clock()),
            )

    def audit_records(self, job_id: int) -> list[AuditRecord]:
        rows = self._db.execute("SELECT record FROM audit WHERE job_id = ? ORDER BY id", (job_id,)).fetchall()
        return [AuditRecord.model_validate_json(row[0]) for row in rows]

    def now(self) -> float:
        return self._clock()

    def list_jobs(self, state: JobState | None = None, source: str | None = None, limit: int = 100) -> list[Job]:
        """The most recently changed jobs first, optionally of one state and one source."""
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE (? IS NULL OR state = ?) AND (? IS NULL OR source = ?)"
            " ORDER BY updated_at DESC, id DESC LIMIT ?",
            (state, state, source, source, limit),
        ).fetchall()
        return [_job(row) for row in rows]

    def show(self, job_id: int) -> JobDetail | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        errors = self._db.execute(
            "SELECT at, attempt, error FROM job_errors WHERE job_id = ? ORDER BY id", (job_id,)
        ).fetchall()
        audit = self._db.execute("SELECT at, record FROM audit WHERE job_id = ? ORDER BY id", (job_id,)).fetchall()
        return JobDetail(
            job=_job(row),
            errors=[JobError(at=at, attempt=attempt, error=error) for at, attempt, error in errors],
            audit=[AuditEntry(at=at, record=AuditRecord.model_validate_json(record)) for at, record in audit],
        )

    def requeue(self, job_id: int | None = None, source: str | None = None) -> int:
        """Give dead jobs (one, or every one of a source) a fresh set of attempts; returns how many.
        Their error history stays, so `show` still tells why they died before."""
        if job_id is None and source is None:
            raise ValueError("requeue needs a job id or a source")
        now = self._clock()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET state = 'new', attempts = 0, failures = 0, failing_since = NULL, next_attempt_at = ?,"
                " lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE state = 'dead' AND (? IS NULL OR id = ?)"
                " AND (? IS NULL OR source = ?)",
                (now, now, job_id, job_id, source, source),
            )
        return cursor.rowcount

    def purge(self, older_than_s: float, source: str | None = None) -> int:
        """Delete finished jobs (done, needs_review) unchanged for `older_than_s`, with their audit
        records and errors; returns how many jobs went."""
        cutoff = self._clock() - older_than_s
        where = "state IN ('done', 'needs_review') AND updated_at < ? AND (? IS NULL OR source = ?)"
        params = (cutoff, source, source)
        with self._transaction() as db:
            for table in ("audit", "job_errors"):
                db.execute(f"DELETE FROM {table} WHERE job_id IN (SELECT id FROM jobs WHERE {where})", params)
            cursor = db.execute(f"DELETE FROM jobs WHERE {where}", params)
        return cursor.rowcount


def _job(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["payload"] = json.loads(data["payload"])
    data["result"] = json.loads(data["result"]) if data["result"] else None
    return Job.model_validate(data)
