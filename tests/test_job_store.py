"""The durable job store: exclusive leased claims, retries, dead letters, and survival of SIGKILL."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from ticketsmith.connectors.job_store import AuditRecord, LeaseLost, RetryPolicy, SqliteJobStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> SqliteJobStore:
    policy = RetryPolicy(max_attempts=3, base_delay_s=10, max_delay_s=100, jitter=0.2)
    return SqliteJobStore(tmp_path / "jobs.db", policy, clock=clock, rng=random.Random(1))


AUDIT = AuditRecord(input_hash="h", model="m", output={"category": "Network"}, written_to=["jira:IT-1"])


def test_a_ticket_seen_twice_is_one_job(store: SqliteJobStore) -> None:
    assert store.enqueue("jira", "IT-1", {"text": "VPN down"})
    assert not store.enqueue("jira", "IT-1", {"text": "VPN down (edited)"})
    assert store.enqueue("inbox", "IT-1", {"text": "other source"})
    assert store.counts() == {"new": 2}


def test_claim_complete_and_audit(store: SqliteJobStore) -> None:
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


def test_expired_lease_goes_to_another_worker_and_the_first_cannot_write(store: SqliteJobStore, clock: Clock) -> None:
    store.enqueue("jira", "IT-1", {"text": "x"})
    first = store.claim("w1", lease_s=30)
    assert first is not None
    clock.now += 31
    second = store.claim("w2", lease_s=30)
    assert second is not None and second.id == first.id and second.attempts == 2
    with pytest.raises(LeaseLost):
        store.complete(first.id, "w1", "done", {}, AUDIT)
    with pytest.raises(LeaseLost):
        store.extend(first.id, "w1", 30)
    store.complete(second.id, "w2", "done", {}, AUDIT)
    assert store.audit_records(first.id) == [AUDIT]


def test_failures_back_off_honour_retry_after_and_end_dead(store: SqliteJobStore, clock: Clock) -> None:
    store.enqueue("jira", "IT-1", {"text": "x"})
    job = store.claim("w1", 30)
    assert job is not None
    assert store.fail(job.id, "w1", "HTTP 500") == "failed"
    assert store.claim("w1", 30) is None  # not yet due
    retry_at = store.get("jira", "IT-1").next_attempt_at  # type: ignore[union-attr]
    assert 8 <= retry_at - clock.now <= 12  # 10 s +- 20% jitter
    clock.now = retry_at
    job = store.claim("w1", 30)
    assert job is not None and job.attempts == 2
    assert store.fail(job.id, "w1", "HTTP 429", retry_after=90) == "failed"
    assert store.get("jira", "IT-1").next_attempt_at - clock.now == pytest.approx(90)  # type: ignore[union-attr]
    clock.now += 90
    job = store.claim("w1", 30)
    assert job is not None and job.attempts == 3
    assert store.fail(job.id, "w1", "HTTP 500") == "dead"
    clock.now += 10_000
    assert store.claim("w1", 30) is None
    dead = store.get("jira", "IT-1")
    assert dead is not None and dead.state == "dead" and dead.last_error == "HTTP 500"


def test_release_does_not_count_an_attempt(store: SqliteJobStore) -> None:
    store.enqueue("inbox", "a.txt", {"text": "x"})
    job = store.claim("w1", 30)
    assert job is not None
    store.release(job.id, "w1")
    again = store.claim("w2", 30)
    assert again is not None and again.attempts == 1


def test_a_job_that_kills_every_worker_is_dead_lettered(store: SqliteJobStore, clock: Clock) -> None:
    store.enqueue("inbox", "poison.txt", {"text": "x"})
    for _ in range(3):
        assert store.claim("w", 30) is not None
        clock.now += 31  # the worker died: its lease runs out
    assert store.claim("w", 30) is None
    dead = store.get("inbox", "poison.txt")
    assert dead is not None and dead.state == "dead" and "never finished" in (dead.last_error or "")


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
