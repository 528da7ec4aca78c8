"""Helpers for the ITSM connector tests: a worker over a fresh job store, and draining it."""

import time
from collections.abc import Callable
from pathlib import Path

from tests.fakes.faults import Fault, FaultyServer
from ticketsmith.connectors.itsm import ItsmConnector
from ticketsmith.connectors.itsm_worker import ItsmWorker
from ticketsmith.connectors.job_store import SqliteJobStore
from ticketsmith.connectors.triage_port import TicketTriager

TICKETS = [
    ("VPN drops every 5 minutes", "Since this morning the VPN disconnects.\nWhole finance team affected."),
    ("Outlook crashes", "Outlook crashes when I open attachments. Only me."),
    ("New starter laptop", "Please prepare a laptop for our new colleague starting Monday."),
    ("Printer jam 3rd floor", "The printer on floor 3 jams on every page."),
    ("Password expired", "I am locked out of my account after the password expired."),
]


class SteppedJobStore(SqliteJobStore):
    """A job store on the wall clock plus an offset that `skip_backoff` moves forward, so a test can
    make failed jobs due without waiting out their backoff (and without touching the database)."""

    def __init__(self, path: Path) -> None:
        self.offset_s = 0.0
        super().__init__(path, clock=lambda: time.time() + self.offset_s)

    def skip_backoff(self) -> None:
        """Move the clock to when the last failed job is due: every failed job can be claimed again."""
        due = [job.next_attempt_at for job in self.list_jobs("failed")]
        self.offset_s += max([0.0, *(at - self.now() for at in due)])


def make_worker(triager: TicketTriager, connector: ItsmConnector, tmp_path: Path) -> tuple[ItsmWorker, SteppedJobStore]:
    store = SteppedJobStore(tmp_path / "jobs.db")
    return ItsmWorker(triager, store, connector, "test-worker", lease_s=60, poll_interval_s=0), store


def drain(worker: ItsmWorker) -> None:
    worker.poll_once()
    while worker.work_once():
        pass


def retry_now(worker: ItsmWorker, store: SteppedJobStore) -> None:
    """Skip the backoff wait of failed jobs and work them again."""
    store.skip_backoff()
    drain(worker)


def check_fault_outcome(
    server: FaultyServer,
    worker: ItsmWorker,
    store: SteppedJobStore,
    key: str,
    fault: Fault,
    state: str,
    notes: Callable[[], int],
) -> None:
    """Inject `fault`, work the ticket: the job ends in `state`, honouring any Retry-After; a transient
    fault, once gone, lets the retry finish the ticket with exactly one note."""
    server.faults.append(fault)
    started = time.time()
    drain(worker)
    job = store.get(worker.connector.source, key)
    assert job is not None and job.state == state, job
    if fault.headers.get("Retry-After"):
        assert job.next_attempt_at >= started + float(fault.headers["Retry-After"])
    if state == "failed":
        retry_now(worker, store)
        job = store.get(worker.connector.source, key)
        assert job is not None and job.state in ("done", "needs_review")
        assert notes() == 1
