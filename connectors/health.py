"""What /healthz reports: can this worker work, and is it working as it should.

- `unavailable` (HTTP 503): it cannot work. The job store does not take a write (a cheap one: a
  health cursor set and read back), or the model is not loaded. A load balancer or monitor should
  page someone.
- `degraded` (HTTP 200): it works, but not as configured for production. The model is not trained
  for its taxonomy (every answer goes to review), or a source is paused.
- `ok` (HTTP 200).

Sources are paused by whoever decides they must wait (the retry work's circuit breaker, or
credentials that stopped working) through `SourcePauses`; this module only reports them."""

import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, Protocol

from ticketsmith.connectors.job_store import JobStore

HEALTH_CURSOR = "ticketsmith:healthz"  # not a source name: those are `<kind>:<id>` or `inbox`
HealthStatus = Literal["ok", "degraded", "unavailable"]


class ServedModel(Protocol):
    @property
    def loaded(self) -> bool:
        """False before the model is loaded or after it was closed."""
        ...

    @property
    def trained_fields(self) -> Sequence[str]:
        """The label fields a trained part predicts; empty: the model is not trained for its taxonomy."""
        ...


class SourcePauses:
    """The sources that wait, and why; thread-safe (the worker loop pauses, the HTTP side reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paused: dict[str, str] = {}

    def pause(self, source: str, reason: str) -> None:
        with self._lock:
            self._paused[source] = reason

    def resume(self, source: str) -> None:
        with self._lock:
            self._paused.pop(source, None)

    def paused(self) -> dict[str, str]:
        with self._lock:
            return dict(self._paused)


class HealthReport(NamedTuple):
    status: HealthStatus
    reasons: list[str]
    jobs: dict[str, int]

    @property
    def http_status(self) -> int:
        return 503 if self.status == "unavailable" else 200


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def check_health(
    model: ServedModel, store: JobStore, pauses: SourcePauses, clock: Callable[[], float] = time.time
) -> HealthReport:
    """`store` must be usable from the calling thread (the HTTP side holds its lock)."""
    fatal: list[str] = []
    jobs: dict[str, int] = {}
    # Any failure is the answer here: reported, never raised (a probe that crashes says nothing).
    try:
        stamp = repr(clock())
        store.set_cursor(HEALTH_CURSOR, stamp)
        if store.get_cursor(HEALTH_CURSOR) != stamp:
            fatal.append("the job store is not writable: a write did not read back")
    except Exception as exc:
        fatal.append(f"the job store is not writable: {_failure(exc)}")
    try:
        jobs = store.counts()
    except Exception as exc:
        fatal.append(f"the job store cannot be read: {_failure(exc)}")
    if not model.loaded:
        fatal.append("the model is not loaded")
    if fatal:
        return HealthReport("unavailable", fatal, jobs)
    degraded = [f"source {source} is paused: {reason}" for source, reason in sorted(pauses.paused().items())]
    if not model.trained_fields:
        degraded.insert(0, "the model is not trained for its taxonomy: every ticket goes to review")
    return HealthReport("degraded" if degraded else "ok", degraded, jobs)
