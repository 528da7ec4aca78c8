"""What the HTTP side and the workers need from a triager, and no more.

The HTTP app and the inbox and ITSM workers depend on this protocol rather than on the concrete
`Triager`, so that tests about HTTP (auth, limits, the OpenAPI contract) and about connector and
worker logic can run against a small fake (tests/fakes/triager.py) without loading llama.cpp.
`ticketsmith.runtime.triager.Triager` satisfies it."""

from collections.abc import Sequence
from typing import Protocol

from ticketsmith.runtime.schema import TriageObserver, TriageResult


class TicketTriager(Protocol):
    observers: list[TriageObserver]
    """Called after every triage (the HTTP side's metrics append theirs)."""

    def triage(self, text: str, ticket_id: str | int | None = None) -> TriageResult:
        """One validated result; raises TicketError for text it cannot triage, DecodingError on a bug."""
        ...

    def model_info(self) -> dict[str, str]:
        """What is being served; the `model` key names the model file."""
        ...

    def model_label(self) -> str:
        """`model_info` in one line, as audit records carry it."""
        ...

    @property
    def loaded(self) -> bool:
        """False once the model is closed: /healthz answers 503."""
        ...

    @property
    def trained_fields(self) -> Sequence[str]:
        """The label fields a trained part predicts; none: /healthz says degraded."""
        ...
