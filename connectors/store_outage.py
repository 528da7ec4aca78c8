"""Pacing a worker through a job-store outage (a PostgreSQL server restarting, a network cut).

Nothing can be claimed or finished without the store, so the worker pauses: it retries after 1 s,
then 2, 4, ... up to a cap, and says so once when the outage starts and once when it ends, not once
per ticket or per retry. Leases taken before the outage simply run out on the database's clock; a
worker that cannot reach the store writes nothing back (it could not prove the lease is still its)."""

import logging
import time
from collections.abc import Callable

from ticketsmith.connectors.job_store import StoreUnavailable

logger = logging.getLogger(__name__)


class StoreOutage:
    def __init__(self, first_s: float = 1.0, cap_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.first_s, self.cap_s, self._clock = first_s, cap_s, clock
        self._since: float | None = None
        self._failures = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: StoreUnavailable) -> float:
        """Note one failed round; returns how long to pause before the next."""
        if self._since is None:
            self._since = self._clock()
            logger.warning("%s; pausing until it is back (retrying with backoff)", exc)
        self._failures += 1
        return min(self.cap_s, self.first_s * 2.0 ** (self._failures - 1))

    def recovered(self) -> None:
        """A round went through: log the end of an outage, if there was one."""
        if self._since is not None:
            logger.warning("the job store is back after %.0f s; resuming", self._clock() - self._since)
        self._since = None
        self._failures = 0
