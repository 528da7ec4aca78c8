"""The durable job store: exclusive leased claims, retries, dead letters, operator repairs, and survival
of SIGKILL. The contract tests run over both stores (SQLite, and PostgreSQL when a server is reachable:
tests/pg_helpers.py); the PostgreSQL-only ones live in tests/test_pg_job_store.py."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

from tests.pg_helpers import fresh_schema, require_postgres
from ticketsmith.connectors.job_store import (
    AuditRecord,
    FailureKind,
    Job,
    JobState,
    JobStore,
    LeaseLost,
    RetryPolicy,
    SqliteJobStore,
)

if TYPE_CHECKING:
    from ticketsmith.connectors.pg_job_store import PostgresJobStore


class Clock(Protocol):
    """The store's clock as a test sees it: read it, and move it forward without sleeping."""

    def __call__(self) -> float: ...
    def advance(self, seconds: float) -> None: ...


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class DatabaseClock:
    """PostgreSQL's `now()` plus the store's offset: the only clock its leases obey."""

    def __init__(self, store: "PostgresJobStore") -> None:
        self.store = store

    def __call__(self) -> float:
        return self.store.now()

    def advance(self, seconds: float) -> None:
        self.store.clock_offset_s += seconds


POLICY = RetryPolicy(max_attempts=3, base_delay_s=10, max_delay_s=100, jitter=0.2, transient_budget_s=3_600)


@pytest.fixture(params=["sqlite", "postgres"])
def store_and_clock(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[JobStore, Clock]]:
    if request.param == "sqlite":
        clock = ManualClock()
        sqlite = SqliteJobStore(tmp_path / "jobs.db", POLICY, clock=clock, rng=random.Random(1))
        yield sqlite, clock
        sqlite.close()
        return
    url = require_postgres()
    from ticketsmith.connectors.pg_job_store import PostgresJobStore

    with fresh_schema(url) as schema:
        pg = PostgresJobStore(url, schema=schema, policy=POLICY, rng=random.Random(1))
        yield pg, DatabaseClock(pg)
        pg.close()


@pytest.fixture
def store(store_and_clock: tuple[JobStore, Clock]) -> JobStore:
    return store_and_clock[0]


@pytest.fixture
def clock(store_and_clock: tuple[JobStore, Clock]) -> Clock:
    return store_and_clock[1]


AUDIT = AuditRecord(input_hash="h", model="m", output={"category": "Network"}, written_to=["jira:IT-1"])


def test_a_ticket_seen_twice_is_one_job(store: JobStore) -> None:
    assert store.enqueue("jira", "IT-1", {"text": "VPN down"})
    assert not store.enqueue("jira", "IT-1", {"text": "VPN down (edited)"})
    assert store.enqueue("inbox", "IT-1", {"text": "other source"})
    assert store.counts() == {"new": 2}


def test_claim_complete_and_audit(store: JobStore) -> None:
    store.enqueue("jira", "IT-1", {"text": "VPN down"})
    job = store.claim("w1", lease_s=30)
    assert job is not None and job.state == "processing" and job.attempts == 1
    assert store.claim("w2", lease_s=30) is None
    store.complete(job.id, "w1", "needs_review", {"category": "Network"}, AUDIT)
    done = store.get("jira", "IT-1")
    assert done is not None and done.state == "needs_review" and done.result == {"category": "Network"}
    assert store.audit_records(job.id) == [AUDIT]
    with pytest.raises(LeaseLost):
        store.complete(job.id, "w1", "done", {}, AUDIT)  # finished jobs cannot be written twice


def test_expired_lease_goes_to_another_worker_and_the_first_cannot_write(store: JobStore, clock: Clock) -> None:
    store.enqueue("jira", "IT-1", {"text": "x"})
    first = store.claim("w1", lease_s=30)
    assert first is not None
    clock.advance(31)
    second = store.claim("w2", lease_s=30)
    assert second is not None and second.id == first.id and second.attempts == 2
    with pytest.raises(LeaseLost):
        store.complete(first.id, "w1", "done", {}, AUDIT)
    with pytest.raises(LeaseLost):
        store.extend(first.id, "w1", 30)
    store.complete(second.id, "w2", "done", {}, AUDIT)
    assert store.audit_records(first.id) == [AUDIT]


def test_failures_back_off_honour_retry_after_and_end_dead(store: JobStore, clock: Clock) -> None:
    store.enqueue("jira", "IT-1", {"text": "x"})
    job = store.claim("w1", 30)
    assert job is not None
    assert store.fail(job.id, "w1", "HTTP 500") == "failed"
    assert store.claim("w1", 30) is None  # not yet due
    retry_at = store.get("jira", "IT-1").next_attempt_at  # type: ignore[union-attr]
    assert 8 <= retry_at - clock() <= 12  # 10 s +- 20% jitter
    clock.advance(retry_at - clock() + 0.001)
    job = store.claim("w1", 30)
    assert job is not None and job.attempts == 2
    assert store.fail(job.id, "w1", "HTTP 429", retry_after=90) == "failed"
    assert store.get("jira", "IT-1").next_attempt_at - clock() == pytest.approx(90, abs=0.5)  # type: ignore[union-attr]
    clock.advance(90)
    job = store.claim("w1", 30)
    assert job is not None and job.attempts == 3
    assert store.fail(job.id, "w1", "HTTP 500") == "dead"
    clock.advance(10_000)
    assert store.claim("w1", 30) is None
    dead = store.get("jira", "IT-1")
    assert dead is not None and dead.state == "dead" and dead.last_error == "HTTP 500"


def _fail_and_wait(store: JobStore, clock: Clock, error: str, kind: FailureKind) -> tuple[Job, JobState, float]:
    """Claim the one job, fail it as `kind`; returns the claimed job, its state, and its delay (then waited)."""
    job = store.claim("w", 30)
    assert job is not None
    state = store.fail(job.id, "w", error, kind=kind)
    after = store.get(job.source, job.external_id)
    assert after is not None
    delay = after.next_attempt_at - clock()
    clock.advance(max(0.0, delay) + 0.001)
    return job, state, delay


def test_transient_failures_cost_no_attempt_back_off_to_the_cap_and_end_at_the_budget(
    store: JobStore, clock: Clock
) -> None:
    """An outage of the ITSM system: more failures than max_attempts (3), the ticket still waits; the
    backoff doubles to the cap (100 s here); past the budget (1 h here) from the first failure it is dead."""
    store.enqueue("jira:IT", "IT-1", {"key": "IT-1"})
    delays = []
    for _ in range(8):
        job, state, delay = _fail_and_wait(store, clock, "HTTP 503", "transient")
        assert job.attempts == 1 and state == "failed"
        delays.append(delay)
    assert 8 <= delays[0] <= 12 and 16 <= delays[1] <= 24 and 32 <= delays[2] <= 48  # 10 s doubling, +-20%
    assert all(80 - 1 <= delay <= 120 + 1 for delay in delays[4:])  # capped at 100 s +-20%
    waiting = store.get("jira:IT", "IT-1")
    assert waiting is not None and waiting.state == "failed" and waiting.failures == 8 and waiting.attempts == 0
    assert waiting.failing_since is not None
    clock.advance(3_600 - (clock() - waiting.failing_since))  # the budget is spent
    _, state, _ = _fail_and_wait(store, clock, "HTTP 503", "transient")
    dead = store.get("jira:IT", "IT-1")
    assert state == "dead" and dead is not None and dead.state == "dead"
    assert "over the retry budget" in (dead.last_error or "")
    assert store.requeue(dead.id) == 1  # a fresh start: attempts, failures and budget
    fresh = store.claim("w", 30)
    assert fresh is not None and (fresh.attempts, fresh.failures, fresh.failing_since) == (1, 0, None)


def test_a_transient_failure_honours_retry_after(store: JobStore, clock: Clock) -> None:
    store.enqueue("jira:IT", "IT-1", {"key": "IT-1"})
    job = store.claim("w", 30)
    assert job is not None
    assert store.fail(job.id, "w", "HTTP 429", retry_after=250, kind="transient") == "failed"
    assert store.get("jira:IT", "IT-1").next_attempt_at - clock() == pytest.approx(250, abs=0.5)  # type: ignore[union-attr]


def test_a_paused_source_costs_its_tickets_neither_attempts_nor_budget(store: JobStore, clock: Clock) -> None:
    """Credentials rejected: the source is paused, its tickets wait for as long as it takes, and are
    ready again the moment it resumes (the circuit breaker, not the store, says when that is)."""
    store.enqueue("jira:IT", "IT-1", {"key": "IT-1"})
    for _ in range(6):
        job, state, delay = _fail_and_wait(store, clock, "HTTP 401 (credentials rejected)", "paused")
        assert job.attempts == 1 and state == "failed" and delay <= 0.5
        clock.advance(86_400)  # a day each time: no budget runs
    waiting = store.get("jira:IT", "IT-1")
    assert waiting is not None and (waiting.attempts, waiting.failures, waiting.failing_since) == (0, 0, None)


def test_a_ticket_that_crashes_the_worker_still_ends_dead_between_transient_failures(
    store: JobStore, clock: Clock
) -> None:
    """Transient failures give back only their own claim: claims that never end still count."""
    store.enqueue("inbox", "poison.txt", {"text": "x"})
    for _ in range(2):  # the worker dies twice with the ticket in hand
        assert store.claim("w", 30) is not None
        clock.advance(31)
    job, state, _ = _fail_and_wait(store, clock, "HTTP 502", "transient")
    assert job.attempts == 3 and state == "failed"
    assert store.claim("w", 30) is not None  # the third claim without a result
    clock.advance(31)
    assert store.claim("w", 30) is None
    dead = store.get("inbox", "poison.txt")
    assert dead is not None and dead.state == "dead" and "never finished" in (dead.last_error or "")


def test_release_does_not_count_an_attempt(store: JobStore) -> None:
    store.enqueue("inbox", "a.txt", {"text": "x"})
    job = store.claim("w1", 30)
    assert job is not None
    store.release(job.id, "w1")
    again = store.claim("w2", 30)
    assert again is not None and again.attempts == 1


def test_a_job_that_kills_every_worker_is_dead_lettered(store: JobStore, clock: Clock) -> None:
    store.enqueue("inbox", "poison.txt", {"text": "x"})
    for _ in range(3):
        assert store.claim("w", 30) is not None
        clock.advance(31)  # the worker died: its lease runs out
    assert store.claim("w", 30) is None
    dead = store.get("inbox", "poison.txt")
    assert dead is not None and dead.state == "dead" and "never finished" in (dead.last_error or "")


def test_operators_list_show_requeue_and_purge(store: JobStore, clock: Clock) -> None:
    for key in ("IT-1", "IT-2", "IT-3"):
        store.enqueue("jira:IT", key, {"key": key})
    store.enqueue("inbox", "a.txt", {"name": "a.txt"})
    gone = store.claim("w", 30, ("jira:IT",))
    assert gone is not None and gone.external_id == "IT-1"
    assert store.fail(gone.id, "w", "HTTP 404: issue does not exist", kind="permanent") == "dead"
    done = store.claim("w", 30, ("jira:IT",))
    assert done is not None
    store.complete(done.id, "w", "done", {"category": "Network"}, AUDIT)

    assert [job.external_id for job in store.list_jobs(state="dead")] == ["IT-1"]
    assert {job.external_id for job in store.list_jobs(source="jira:IT")} == {"IT-1", "IT-2", "IT-3"}
    assert [job.external_id for job in store.list_jobs(state="new", source="inbox")] == ["a.txt"]
    assert len(store.list_jobs(limit=2)) == 2
    detail = store.show(gone.id)
    assert detail is not None and detail.job.state == "dead" and detail.audit == []
    assert [(e.attempt, e.error) for e in detail.errors] == [(1, "HTTP 404: issue does not exist")]
    finished = store.show(done.id)
    assert finished is not None and [entry.record for entry in finished.audit] == [AUDIT] and finished.errors == []
    assert store.show(9_999) is None

    assert store.requeue(done.id) == 0  # only dead jobs come back
    in_hand = store.claim("w", 30, ("jira:IT",))
    assert in_hand is not None and in_hand.external_id == "IT-3"
    assert store.requeue(gone.id) == 1
    again = store.claim("w", 30, ("jira:IT",))
    assert again is not None and again.id == gone.id and again.attempts == 1  # a fresh set of attempts
    store.fail(again.id, "w", "HTTP 404 again", kind="permanent")
    detail = store.show(gone.id)
    assert detail is not None and [e.error for e in detail.errors] == [
        "HTTP 404: issue does not exist",
        "HTTP 404 again",
    ]
    inbox_job = store.claim("w", 30, ("inbox",))
    assert inbox_job is not None
    store.fail(inbox_job.id, "w", "unreadable", kind="permanent")
    assert store.requeue(source="jira:IT") == 1  # every dead job of that source, no other
    assert [job.external_id for job in store.list_jobs(state="dead")] == ["a.txt"]
    with pytest.raises(ValueError):
        store.requeue()

    clock.advance(3_600)
    assert store.purge(7_200) == 0
    assert store.purge(1_800, source="inbox") == 0
    assert store.purge(1_800) == 1  # the finished one; new and dead jobs stay
    assert store.get("jira:IT", "IT-2") is None and store.show(done.id) is None
    assert store.counts() == {"new": 1, "processing": 1, "dead": 1}
    assert store.enqueue("jira:IT", "IT-2", {"key": "IT-2"})  # reported again, it is a new job


def test_cursors_persist_per_source(store: JobStore) -> None:
    assert store.get_cursor("jira:IT") is None
    store.set_cursor("jira:IT", "IT-5")
    store.set_cursor("jira:IT", "IT-9")
    store.set_cursor("zoho:1", "2026-11-24T08:00:00Z")
    assert store.get_cursor("jira:IT") == "IT-9" and store.get_cursor("zoho:1") == "2026-11-24T08:00:00Z"


def test_a_jobs_db_from_before_the_retry_budget_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as db:  # the jobs table as the previous release made it
        db.execute(
            "CREATE TABLE jobs (id INTEGER PRIMARY KEY, source TEXT NOT NULL, external_id TEXT NOT NULL,"
            " payload TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, lease_owner TEXT,"
            " lease_until REAL, next_attempt_at REAL NOT NULL, last_error TEXT, result TEXT, created_at REAL NOT NULL,"
            " updated_at REAL NOT NULL, UNIQUE (source, external_id))"
        )
        db.execute("INSERT INTO jobs VALUES (1, 'inbox', 'a.txt', '{}', 'new', 0, NULL, NULL, 0, NULL, NULL, 0, 0)")
    for _ in range(2):  # twice: the upgrade is idempotent
        store = SqliteJobStore(path)
        job = store.get("inbox", "a.txt")
        assert job is not None and job.failures == 0 and job.failing_since is None
        store.close()


def _claim_all(path: str) -> list[int]:
    store = SqliteJobStore(Path(path))
    claimed = []
    while (job := store.claim(f"pid-{os.getpid()}", 60)) is not None:
        claimed.append(job.id)
    return claimed


def test_concurrent_processes_never_claim_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = SqliteJobStore(path)
    for i in range(200):
        store.enqueue("inbox", f"t{i}", {"text": str(i)})
    with ProcessPoolExecutor(4) as pool:
        claimed = [job for batch in pool.map(_claim_all, [str(path)] * 4) for job in batch]
    assert sorted(claimed) == sorted({*claimed}) and len(claimed) == 200


def test_a_worker_killed_mid_ticket_leaves_the_job_to_be_retried(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = SqliteJobStore(path)
    store.enqueue("inbox", "ticket.txt", {"text": "printer jam"})
    worker = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from ticketsmith.connectors.job_store import SqliteJobStore
        job = SqliteJobStore(Path({str(path)!r})).claim("doomed", lease_s=1.0)
        print(job.id, flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", worker], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip().isdigit()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert store.claim("survivor", 30) is None  # still leased to the dead worker
    time.sleep(1.2)
    job = store.claim("survivor", 30)
    assert job is not None and job.attempts == 2 and job.payload == {"text": "printer jam"}
    store.complete(job.id, "survivor", "done", {"category": "Hardware"}, AUDIT)
    assert store.counts() == {"done": 1}
