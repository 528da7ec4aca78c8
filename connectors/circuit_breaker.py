"""A circuit breaker per ITSM source: a source that keeps failing is paused instead of burning tickets.

After `failures` transient failures in a row (5xx, 429, timeouts), or at once when the source rejects
our credentials (401/403), the breaker opens: the worker neither polls nor claims for that source.
When the pause is over, one probe goes through (a ready ticket, else a poll); its success closes the
breaker, its failure reopens it for twice as long, up to `max_pause_s`. It logs once when it opens
and once when it closes (and when an outage turns into rejected credentials), not per ticket; the
pause is shown on /healthz and /metrics through the `PauseBoard` it is given."""

import logging
import time
from collections.abc import Callable
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

BreakerState = Literal["closed", "open", "half_open"]
FailureCause = Literal["outage", "credentials"]


class BreakerSettings(BaseModel):
    """The worker YAML's `breaker:` section, the same for every source."""

    model_config = ConfigDict(extra="forbid")

    failures: int = Field(5, ge=1, description="transient failures in a row that pause a source")
    first_pause_s: float = Field(5.0, gt=0, description="the first pause; it doubles while probes fail")
    max_pause_s: float = Field(300.0, gt=0, description="the longest pause between two probes")


class PauseBoard(Protocol):
    """Where paused sources are shown (connectors/health.py's SourcePauses)."""

    def pause(self, source: str, reason: str) -> None: ...
    def resume(self, source: str) -> None: ...


class CircuitBreaker:
    """One source's breaker. Used from the worker loop's thread only; the board is thread-safe."""

    def __init__(
        self,
        source: str,
        settings: BreakerSettings | None = None,
        board: PauseBoard | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.settings = settings or BreakerSettings()
        self._board, self._clock = board, clock
        self.state: BreakerState = "closed"
        self._streak = 0  # failures in a row
        self._pauses = 0  # pauses since the last success: the next one lasts 2^pauses times the first
        self._until = 0.0
        self._since = 0.0
        self._cause: FailureCause = "outage"

    @property
    def paused(self) -> bool:
        return self.state != "closed"

    @property
    def probing(self) -> bool:
        """The pause is over and the next operation is a probe: its outcome decides."""
        return self.state == "half_open"

    def allows(self) -> bool:
        """May the worker touch this source now? An open breaker whose pause is over lets a probe through."""
        if self.state == "open" and self._clock() >= self._until:
            self.state = "half_open"
        return self.state != "open"

    def seconds_left(self) -> float:
        """How long the current pause still lasts (0 when the source may be tried)."""
        return max(0.0, self._until - self._clock()) if self.state == "open" else 0.0

    def succeeded(self) -> None:
        """The source answered (a ticket done, a poll, even a 404: the system works)."""
        if self.paused:
            logger.warning(
                "%s: the source answers again after %.0f s; resuming", self.source, self._clock() - self._since
            )
            if self._board is not None:
                self._board.resume(self.source)
        self.state, self._streak, self._pauses = "closed", 0, 0

    def failed(self, error: str, cause: FailureCause = "outage") -> None:
        """A transient failure (`outage`) or rejected credentials (`credentials`, which open at once)."""
        self._streak += 1
        if self.state == "closed" and cause == "outage" and self._streak < self.settings.failures:
            return
        self._open(error, cause)

    def _open(self, error: str, cause: FailureCause) -> None:
        pause = min(self.settings.max_pause_s, self.settings.first_pause_s * 2.0**self._pauses)
        self._pauses += 1
        self._until = self._clock() + pause
        reason = (
            f"credentials rejected ({error}); waiting until they work again"
            if cause == "credentials"
            else f"{self._streak} failures in a row (last: {error})"
        )
        if self.state == "closed":
            self._since = self._clock()
            logger.warning(
                "%s: paused, %s; probing with backoff up to %.0f s", self.source, reason, self.settings.max_pause_s
            )
        elif cause != self._cause:  # the outage became a credentials problem (or back): say so, once
            logger.warning("%s: still paused, now %s", self.source, reason)
        self.state, self._cause = "open", cause
        if self._board is not None:
            self._board.pause(self.source, reason)
