"""The worker for the inbox folder: files become jobs in the durable store, jobs become results.

Order of a job, so that a crash at any instant loses nothing and writes nothing twice: the result is
written atomically under a name fixed by the job's key (a retry overwrites it with the same answer),
then the job is completed with its audit record, then the original moves out of inbox/. A scan that
finds an original whose job is already finished only completes the move."""

import threading

from ticketsmith.connectors.inbox import InboxFolders, read_inbox_file
from ticketsmith.connectors.job_store import AuditRecord, FinalState, Job, JobStore, LeaseLost
from ticketsmith.connectors.ticket_log import TicketTimer
from ticketsmith.connectors.triage_port import TicketTriager
from ticketsmith.runtime.errors import DecodingError, TicketError

SOURCE = "inbox"


class InboxWorker:
    def __init__(
        self,
        triager: TicketTriager,
        store: JobStore,
        folders: InboxFolders,
        worker_id: str,
        lease_s: float = 60.0,
        settle_s: float = 1.0,
        max_bytes: int = 1_000_000,
    ) -> None:
        self.triager, self.store, self.folders = triager, store, folders
        self.worker_id, self.lease_s, self.settle_s, self.max_bytes = worker_id, lease_s, settle_s, max_bytes
        self.model = triager.model_label()

    def scan(self) -> None:
        """Turn due files into jobs; finish moving originals whose jobs ended before a crash."""
        for entry in self.folders.ready(self.settle_s):
            try:
                dropped = read_inbox_file(entry, self.max_bytes)
            except (TicketError, OSError) as exc:
                self.folders.move(entry, to_failed=True, error=str(exc))
                continue
            key = f"{entry.name}:{dropped.sha256[:16]}"
            if self.store.enqueue(SOURCE, key, {"name": entry.name}):
                continue
            job = self.store.get(SOURCE, key)
            if job is not None and job.state in ("done", "needs_review", "dead"):
                self.folders.move(entry, to_failed=job.state == "dead", error=job.last_error)

    def work_once(self) -> bool:
        """Process one job if one is ready; False when there was none."""
        job = self.store.claim(self.worker_id, self.lease_s, (SOURCE,))
        if job is None:
            return False
        self._process(job)
        return True

    def _process(self, job: Job) -> None:
        entry = self.folders.inbox / str(job.payload["name"])
        timer = TicketTimer(SOURCE, entry.name)
        try:
            dropped = read_inbox_file(entry, self.max_bytes)
            result = self.triager.triage(dropped.text, ticket_id=dropped.name)
        except (TicketError, DecodingError, OSError) as exc:
            try:
                self.store.fail(job.id, self.worker_id, str(exc), kind="permanent")
            except LeaseLost:
                timer.log("lease-lost", None, "outlived its lease; left to the worker that holds it")
                return
            timer.log("dead", None, str(exc))
            if entry.exists() or entry.is_symlink():
                self.folders.move(entry, to_failed=True, error=str(exc))
            return
        output = {**result.model_dump(mode="json"), "source_file": dropped.name, "file_cut": dropped.cut}
        target = self.folders.write_result(job.external_id, output)
        audit = AuditRecord(
            input_hash=dropped.sha256,
            model=self.model,
            output=output,
            confidences=result.confidence.model_dump(),
            written_to=[str(target)],
        )
        state: FinalState = "needs_review" if result.needs_review else "done"
        try:
            self.store.complete(job.id, self.worker_id, state, output, audit)
        except LeaseLost:  # too slow: the job is another worker's now, and it writes the same result file
            timer.log("lease-lost", result, "outlived its lease; left to the worker that holds it")
            return
        self.folders.move(entry, to_failed=False)
        timer.log(state, result)

    def tick(self, stop: threading.Event) -> None:
        """Turn new files into jobs, then work until no job is ready or `stop` is set."""
        self.scan()
        while not stop.is_set() and self.work_once():
            pass
