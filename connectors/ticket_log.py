"""One log line per ticket a worker handles, the same for every source.

Operators follow the worker in the journal: which ticket, what became of it, what it was labelled,
how sure the model was and how long it took. The fields also go to the record as `extra`, so that
`--log-format json` gives each of them as a key. Only labels and numbers: never the ticket's text."""

import logging
import time
from typing import Literal, NamedTuple

from ticketsmith.runtime.schema import TriageResult
from ticketsmith.runtime.taxonomy import LABEL_FIELDS

TICKET_LOGGER = "ticketsmith.tickets"
TicketOutcome = Literal["done", "needs_review", "retry", "dead", "lease-lost"]

logger = logging.getLogger(TICKET_LOGGER)


class TicketLine(NamedTuple):
    source: str
    ticket: str
    outcome: TicketOutcome
    labels: dict[str, str]
    lowest_confidence: float | None
    ms: int
    shadow: bool = False
    error: str | None = None

    def text(self) -> str:
        labels = " ".join(f"{name}={value}" for name, value in self.labels.items())
        parts = [self.source, self.ticket, self.outcome + (" (shadow: nothing written)" if self.shadow else "")]
        if labels:
            parts.append(labels)
        if self.lowest_confidence is not None:
            parts.append(f"lowest_confidence={self.lowest_confidence:.2f}")
        parts.append(f"{self.ms} ms")
        if self.error:
            parts.append(f"error: {self.error}")
        return " ".join(parts)


def labels_of(result: TriageResult | None) -> dict[str, str]:
    """The labels the taxonomy defines, in schema order (a field it lacks is None, and left out)."""
    if result is None:
        return {}
    return {name: str(getattr(result, name)) for name in LABEL_FIELDS if getattr(result, name) is not None}


class TicketTimer:
    """Started when a worker takes a ticket; `log` writes its one line with the time since."""

    def __init__(self, source: str, ticket: str, shadow: bool = False) -> None:
        self.source, self.ticket, self.shadow = source, ticket, shadow
        self.started = time.perf_counter()

    def log(self, outcome: TicketOutcome, result: TriageResult | None = None, error: str | None = None) -> TicketLine:
        line = TicketLine(
            source=self.source,
            ticket=self.ticket,
            outcome=outcome,
            labels=labels_of(result),
            lowest_confidence=None if result is None else result.overall_confidence,
            ms=round((time.perf_counter() - self.started) * 1000),
            shadow=self.shadow,
            error=error,
        )
        # A ticket that failed is worth a look even when INFO is off; the others are routine.
        level = logging.WARNING if outcome in ("retry", "dead", "lease-lost") else logging.INFO
        logger.log(level, "%s", line.text(), extra=line._asdict())
        return line
