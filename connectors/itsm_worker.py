"""The worker for an ITSM system: create first, enrich later.

Polling turns each new ticket into a job (the key is the ticket's key, so a ticket seen twice is one
job) before the cursor moves past it. A job reads the ticket, triages it, writes back through the
connector (idempotent: fields only where still empty, the note only if its marker is absent) and is
completed with its audit record. A crash at any point leaves the job to be retried, and the retry
writes nothing twice. Transient API failures (429 with Retry-After, 5xx, timeouts) retry with
capped backoff for a time budget without using up the ticket's attempts; a ticket that is gone (404)
or text that cannot be triaged is dead-lettered at once. A source that keeps failing, or rejects our
credentials, is paused by its circuit breaker (connectors/circuit_breaker.py): no poll and no claim
until a probe gets through, so an outage burns no ticket.

A source in `mode: shadow` is triaged, audited and counted, but nothing is written back: a team tries
the model on live tickets before it lets it touch them."""

import hashlib
import logging
import threading
import time
from collections.abc import Callable

from ticketsmith.connectors.circuit_breaker import CircuitBreaker
from ticketsmith.connectors.http_api import ConnectorError
from ticketsmith.connectors.itsm import ItsmConnector
from ticketsmith.connectors.job_store import AuditRecord, FailureKind, FinalState, Job, JobStore, LeaseLost
from ticketsmith.connectors.ticket_log import TicketTimer
from ticketsmith.connectors.triage_port import TicketTriager
from ticketsmith.runtime.errors import DecodingError, TicketError
from ticketsmith.runtime.schema import TriageResult

logger = logging.getLogger(__name__)


def failure_kind(exc: ConnectorError) -> FailureKind:
    """What a connector failure costs the ticket: rejected credentials pause its source (nothing), other
    transient failures only time (the retry budget), the rest (404, a value refused) is permanent."""
    if exc.status in (401, 403):
        return "paused"
    return "transient" if exc.transient else "permanent"


class ItsmWorker:
    def __init__(
        self,
        triager: TicketTriager,
        store: JobStore,
        connector: ItsmConnector,
        worker_id: str,
        lease_s: float = 60.0,
        poll_interval_s: float = 30.0,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.triager, self.store, self.connector = triager, store, connector
        self.worker_id, self.lease_s, self.poll_interval_s = worker_id, lease_s, poll_interval_s
        self.breaker = breaker or CircuitBreaker(connector.source, clock=clock)
        self._clock = clock
        self.model = triager.model_label()
        self._next_poll = 0.0

    def poll_once(self) -> int:
        """Enqueue the tickets created since the persisted cursor; returns how many were seen."""
        source = self.connector.source
        cursor = self.store.get_cursor(source)
        try:
            keys, after = self.connector.poll(cursor)
        except ConnectorError as exc:
            wait = max(exc.retry_after or 0.0, self.poll_interval_s)
            self._next_poll = self._clock() + wait
            kind = failure_kind(exc)
            if kind != "permanent":
                was_paused = self.breaker.paused
                self.breaker.failed(str(exc), "credentials" if kind == "paused" else "outage")
                if self.breaker.paused or was_paused:
                    return 0  # the breaker has said it; its pause decides the next try
            logger.warning("%s: polling failed (%s); next try in %.0f s", source, exc, wait)
            return 0
        self.breaker.succeeded()
        for key in keys:
            self.store.enqueue(source, key, {"key": key})
        if after is not None and after != cursor:
            self.store.set_cursor(source, after)  # only once every ticket before it is a job
        self._next_poll = self._clock() + self.poll_interval_s
        return len(keys)

    def poll_soon(self) -> None:
        """A webhook said something changed: poll at the next tick (safe to call from another thread)."""
        self._next_poll = 0.0

    def work_once(self) -> bool:
        job = self.store.claim(self.worker_id, self.lease_s, (self.connector.source,))
        if job is None:
            return False
        self._process(job)
        return True

    @property
    def shadow(self) -> bool:
        return self.connector.settings.mode == "shadow"

    def _process(self, job: Job) -> None:
        key = str(job.payload["key"])
        marker = f"[ticketsmith:{self.connector.source}:{key}]"
        timer = TicketTimer(self.connector.source, key, self.shadow)
        result: TriageResult | None = None
        try:
            ticket = self.connector.fetch(key)
            result = self.triager.triage(ticket.text, ticket_id=key)
            self.store.extend(job.id, self.worker_id, self.lease_s)  # still ours? then write
            written = [] if self.shadow else self.connector.write_back(ticket, result, marker)
        except ConnectorError as exc:
            kind = failure_kind(exc)
            if kind == "permanent":
                self.breaker.succeeded()  # the system answered: it is up, this ticket is the problem
            else:
                self.breaker.failed(str(exc), "credentials" if kind == "paused" else "outage")
            self._fail(job, timer, result, str(exc), exc.retry_after, kind)
            return
        except (TicketError, DecodingError) as exc:
            self._fail(job, timer, result, str(exc), None, "permanent")
            return
        except LeaseLost:
            timer.log("lease-lost", result, "lost before write-back; left to the worker that holds it")
            return
        output = result.model_dump(mode="json")
        audit = AuditRecord(
            input_hash=hashlib.sha256(ticket.text.encode()).hexdigest(),
            model=self.model,
            output=output,
            confidences=result.confidence.model_dump(),
            written_to=written,
            mode=self.connector.settings.mode,
        )
        self.breaker.succeeded()
        state: FinalState = "needs_review" if result.needs_review else "done"
        try:
            self.store.complete(job.id, self.worker_id, state, output, audit)
        except LeaseLost:
            timer.log("lease-lost", result, "outlived its lease; left to the worker that holds it")
            return
        timer.log(state, result)

    def _fail(
        self,
        job: Job,
        timer: TicketTimer,
        result: TriageResult | None,
        error: str,
        retry_after: float | None,
        kind: FailureKind,
    ) -> None:
        try:
            state = self.store.fail(job.id, self.worker_id, error, retry_after, kind)
        except LeaseLost:  # too slow: the job is in other hands now, and they will retry it
            timer.log("lease-lost", result, error)
            return
        timer.log("dead" if state == "dead" else "retry", result, error)

    def tick(self, stop: threading.Event) -> None:
        """Poll when due, then work until no job is ready or `stop` is set. A paused source is left
        alone until its breaker lets a probe through: a ready ticket, else a poll."""
        if not self.breaker.allows():
            return
        if self.breaker.probing:
            if not self.work_once():
                self.poll_once()
        elif self._clock() >= self._next_poll:
            self.poll_once()
        while not stop.is_set() and self.breaker.allows() and self.work_once():
            pass
