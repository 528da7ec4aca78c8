"""The PostgreSQL job store against a real server: migrations, concurrent claims from several processes,
connections cut under load, and two `ticketsmith worker` processes sharing one queue while one is
SIGKILLed. The contract it shares with SQLite is tested over both in tests/test_job_store.py."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from tests.fakes.jira import FakeJira
from tests.fakes.server import serve
from tests.itsm_helpers import TICKETS
from tests.pg_helpers import fresh_schema, require_postgres, terminate_backends
from ticketsmith.connectors.job_store import AuditRecord, LeaseLost, StoreUnavailable
from ticketsmith.connectors.store_outage import StoreOutage

AUDIT = AuditRecord(input_hash="h", model="m", output={"category": "Network"})
# The soak below runs 16 tickets in the suite; the figure in docs/job-store.md is from 300.
SOAK_TICKETS = int(os.environ.get("TICKETSMITH_SOAK_TICKETS", "16"))


@pytest.fixture
def pg() -> Iterator[tuple[str, str]]:
    """(server URL, a schema of this test's own)."""
    url = require_postgres()
    with fresh_schema(url) as schema:
        yield url, schema


def test_concurrent_start_ups_migrate_once(pg: tuple[str, str]) -> None:
    from ticketsmith.connectors.pg_job_store import MIGRATIONS, PostgresJobStore

    url, schema = pg
    errors: list[BaseException] = []
    stores: list[PostgresJobStore] = []

    def start() -> None:
        try:
            stores.append(PostgresJobStore(url, schema=schema))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(stores) == 6
    import psycopg

    with psycopg.connect(url) as conn:
        versions = conn.execute(f"SELECT version FROM {schema}.schema_migrations ORDER BY version").fetchall()
    assert [v for (v,) in versions] == list(range(1, len(MIGRATIONS) + 1))
    assert stores[0].enqueue("jira:IT", "IT-1", {}) and not stores[1].enqueue("jira:IT", "IT-1", {})
    for store in stores:
        store.close()


def test_a_schema_newer_than_the_code_is_refused(pg: tuple[str, str]) -> None:
    import psycopg

    from ticketsmith.connectors.pg_job_store import PostgresJobStore, SchemaTooNew

    url, schema = pg
    PostgresJobStore(url, schema=schema).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {schema}.schema_migrations VALUES (99, now())")
    with pytest.raises(SchemaTooNew, match="version 99, newer than this ticketsmith knows"):
        PostgresJobStore(url, schema=schema)


def test_an_unreachable_database_is_one_line() -> None:
    pytest.importorskip("psycopg")
    from ticketsmith.connectors.pg_job_store import PostgresJobStore

    with pytest.raises(StoreUnavailable) as caught:
        PostgresJobStore("postgresql://ticketsmith@127.0.0.1:1/jobs", password="s3cret", connect_timeout_s=1)
    message = str(caught.value)
    assert "\n" not in message and "127.0.0.1:1" in message and "s3cret" not in message


def _claim_all(url: str, schema: str) -> list[int]:
    from ticketsmith.connectors.pg_job_store import PostgresJobStore

    store = PostgresJobStore(url, schema=schema)
    claimed = []
    while (job := store.claim(f"pid-{os.getpid()}", 60)) is not None:
        claimed.append(job.id)
        store.complete(job.id, f"pid-{os.getpid()}", "done", {}, AUDIT)
    store.close()
    return claimed


def test_concurrent_processes_never_claim_the_same_job(pg: tuple[str, str]) -> None:
    from ticketsmith.connectors.pg_job_store import PostgresJobStore

    url, schema = pg
    store = PostgresJobStore(url, schema=schema)
    for i in range(300):
        store.enqueue("inbox", f"t{i}", {"text": str(i)})
    with ProcessPoolExecutor(4) as pool:
        batches = list(pool.map(_claim_all, [url] * 4, [schema] * 4))
    claimed = [job for batch in batches for job in batch]
    assert len(claimed) == 300 and len(set(claimed)) == 300
    assert sum(1 for batch in batches if batch) >= 2, "the claims were spread over the processes"
    assert store.counts() == {"done": 300}
    store.close()


def _work_through_cuts(url: str, schema: str) -> list[int]:
    """A worker loop without a model: claim, hold, extend, complete, pausing through outages as the
    service does, until no job is left unfinished. Returns the jobs it completed."""
    from ticketsmith.connectors.pg_job_store import PostgresJobStore

    for _ in range(50):  # started while connections are being cut: a supervisor would start it again
        try:
            store = PostgresJobStore(url, schema=schema, connect_timeout_s=2)
            break
        except StoreUnavailable:
            time.sleep(0.1)
    worker = f"pid-{os.getpid()}"
    outage = StoreOutage(first_s=0.05, cap_s=0.5)
    completed: list[int] = []
    while True:
        try:
            job = store.claim(worker, lease_s=3)
            if job is None:
                if set(store.counts()) <= {"done"}:
                    break
                time.sleep(0.2)  # a job whose claim reply was cut comes back when its lease runs out
                continue
            time.sleep(0.002)  # the "triage"
            store.extend(job.id, worker, 3)
            store.complete(job.id, worker, "done", {"n": job.external_id}, AUDIT)
            completed.append(job.id)
            outage.recovered()
        except LeaseLost:
            continue  # a completion whose reply was cut: the retry finds it already done
        except StoreUnavailable as exc:
            time.sleep(outage.failed(exc))
    store.close()
    return completed


def test_cut_connections_lose_nothing_and_finish_each_job_once(pg: tuple[str, str]) -> None:
    from ticketsmith.connectors.pg_job_store import PostgresJobStore

    url, schema = pg
    store = PostgresJobStore(url, schema=schema)
    for i in range(300):
        store.enqueue("jira:IT", f"IT-{i}", {"key": f"IT-{i}"})
    cuts = 0
    rng = random.Random(3)
    with ProcessPoolExecutor(3) as pool:
        futures = [pool.submit(_work_through_cuts, url, schema) for _ in range(3)]
        deadline = time.time() + 120
        while not all(future.done() for future in futures) and time.time() < deadline:
            cuts += terminate_backends(url, schema)
            time.sleep(rng.uniform(0.2, 1.0))
        completed = [job for future in futures for job in future.result(timeout=60)]
    assert cuts > 0
    assert len(completed) == len(set(completed))  # no job was completed twice
    assert store.counts() == {"done": 300}, "no job is lost or left leased"
    for job in store.list_jobs(limit=300):
        assert len(store.audit_records(job.id)) == 1, job
    store.close()


def test_the_worker_exits_2_with_one_line_when_the_database_is_unreachable(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    config = tmp_path / "worker.yaml"
    config.write_text(
        "state_dir: state\n"
        "store: {url: 'postgresql://ticketsmith@127.0.0.1:1/jobs', connect_timeout_s: 1}\n"
        "inbox: {root: inbox}\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "ticketsmith", "worker", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("error: the job store at postgresql://") and "loading" not in lines[0]
    )


def test_a_password_in_the_store_url_is_refused() -> None:
    from pydantic import ValidationError

    from ticketsmith.connectors.store_config import StoreSettings

    with pytest.raises(ValidationError, match="must not hold a password"):
        StoreSettings.model_validate({"url": "postgresql://bot:hunter2@db/jobs"})
    with pytest.raises(ValidationError, match="postgresql://"):
        StoreSettings.model_validate({"url": "mysql://bot@db/jobs"})
    settings = StoreSettings.model_validate(
        {"url": "postgresql://bot@db/jobs", "password": {"env": "X"}, "schema": "q"}
    )
    assert settings.schema_name == "q"


@pytest.mark.model  # `ticketsmith worker` processes load the real model
def test_two_workers_on_one_queue_write_each_ticket_once_through_sigkill_and_cuts(tmp_path: Path) -> None:
    """Two `ticketsmith worker` processes (the real model), each with its own state folder as if on its own
    machine, share one PostgreSQL queue and the fake Jira. One is SIGKILLed at random moments and
    restarted, and every database connection is cut now and then: every ticket gets exactly one field
    update, one note, one result and one audit record."""
    url = require_postgres()
    jira = FakeJira()
    with fresh_schema(url) as schema, serve(jira.app()) as jira_url:
        for i in range(SOAK_TICKETS):
            summary, text = TICKETS[i % len(TICKETS)]
            jira.add_issue(f"{summary} #{i}", text)
        commands = []
        for name in ("a", "b"):
            config = tmp_path / f"{name}.yaml"
            config.write_text(
                f"state_dir: state-{name}\n"
                f"store: {{url: '{url}', schema: {schema}}}\n"
                "lease_s: 10\n"  # a killed worker's ticket comes back after 10 s, a busy box's does not
                "poll_interval_s: 0.5\n"
                "runtime: {n_threads: 1}\n"
                "jira:\n"
                f"  - base_url: {jira_url}\n"
                "    email: bot@example.com\n"
                "    api_token: {env: JIRA_TEST_TOKEN}\n"
                "    project: IT\n"
                "    page_size: 5\n"
                "    fields: {category: {field: customfield_10050, shape: value},"
                " urgency: {field: priority, shape: name}}\n",
                encoding="utf-8",
            )
            commands.append([sys.executable, "-m", "ticketsmith", "worker", "--config", str(config)])
        env = {**os.environ, "JIRA_TEST_TOKEN": jira.token}
        steady = subprocess.Popen(commands[0], env=env, stderr=subprocess.DEVNULL)
        doomed = subprocess.Popen(commands[1], env=env, stderr=subprocess.DEVNULL)
        rng = random.Random(7)
        kills = cuts = 0
        next_kill = time.time() + rng.uniform(6, 12)
        deadline = time.time() + 300 + 10 * SOAK_TICKETS  # generous: the box may be shared with other jobs
        most_kills = max(3, SOAK_TICKETS // 30)  # more would dead-letter by design: 5 attempts per ticket
        while time.time() < deadline and (kills < 3 or any(len(c) == 0 for c in jira.comments.values())):
            time.sleep(rng.uniform(1, 3))
            cuts += terminate_backends(url, schema)
            if kills < most_kills and time.time() >= next_kill:  # SIGKILL at a random moment, then restart
                doomed.send_signal(signal.SIGKILL)
                doomed.wait()
                kills += 1
                doomed = subprocess.Popen(commands[1], env=env, stderr=subprocess.DEVNULL)
                next_kill = time.time() + rng.uniform(6, 12)
        time.sleep(2)
        for process in (steady, doomed):
            process.send_signal(signal.SIGTERM)
        assert steady.wait(timeout=60) == 0 and doomed.wait(timeout=60) == 0
        assert cuts > 0 and kills >= 3
        notes = {key: len(comments) for key, comments in jira.comments.items()}
        assert set(notes.values()) == {1}, notes
        assert sorted(key for key, _ in jira.edits) == sorted(jira.issues), "each ticket's fields are written once"
        from ticketsmith.connectors.pg_job_store import PostgresJobStore

        store = PostgresJobStore(url, schema=schema)
        jobs = store.list_jobs(limit=SOAK_TICKETS + 10)
        assert sorted(job.external_id for job in jobs) == sorted(jira.issues)
        assert all(job.state in ("done", "needs_review") for job in jobs), [j for j in jobs if j.result is None]
        audits = [len(store.audit_records(job.id)) for job in jobs]
        assert set(audits) == {1}
        store.close()
        print(  # the soak's figures, for `pytest -s` with TICKETSMITH_SOAK_TICKETS=300
            f"soak: {len(jira.issues)} tickets, {kills} SIGKILLs, {cuts} connections cut; per ticket"
            f" {set(notes.values())} note(s), {len(jira.edits) / len(jira.issues):.0f} field update(s),"
            f" {sum(audits) / len(jobs):.0f} audit record(s) and result(s); attempts {sum(j.attempts for j in jobs)}"
        )
    assert jira.spec_errors == []
