"""What every ITSM connector shares: the connector interface, field mapping, secrets, the triage note.

The mapping from our schema to a system's fields is configuration: each of our fields may go to one
of the system's fields, in the shape that field takes (a plain string, `{"value": ...}`,
`{"name": ...}`, `{"id": ...}`) with optional value translation. A field that already holds a value
(set by a human, or by us in an earlier attempt) is never overwritten: re-running a job writes
nothing new, and a human's later edit stands."""

import os
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.schema import TriageResult
from ticketsmith.runtime.taxonomy import LABEL_FIELDS

OurField = Literal["summary", "category", "subcategory", "application", "urgency", "impact", "assignment_group"]
FieldShape = Literal["string", "value", "name", "id"]


class Secret(BaseModel):
    """A secret read from an environment variable or a file (never written in the YAML itself)."""

    model_config = ConfigDict(extra="forbid")

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "Secret":
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of `env` (variable name) or `file` (path)")
        return self

    def get(self) -> str:
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"the environment variable {self.env} is not set")
            return value
        assert self.file is not None
        try:
            return self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"secret file {self.file} cannot be read: {exc.strerror}") from None

    def __repr__(self) -> str:  # the source, never the value
        return f"Secret(env={self.env!r}, file={self.file!r})"


class FieldTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="the system's field id, e.g. customfield_10050, priority, category")
    shape: FieldShape = "string"
    values: dict[str, str] = Field(default_factory=dict, description="our label -> the system's value")

    def encode(self, label: str) -> Any:
        value = self.values.get(label, label)
        return value if self.shape == "string" else {self.shape: value}

    def decode(self, current: Any) -> str | None:
        """The plain value a field holds now (None when empty)."""
        if isinstance(current, dict):
            current = current.get(self.shape) if self.shape != "string" else None
        return str(current) if current not in (None, "", [], {}) else None


class RemoteTicket(BaseModel):
    key: str
    text: str
    current: dict[str, Any] = Field(default_factory=dict, description="raw current values of the mapped fields")


class ItsmConnector(Protocol):
    source: str

    def poll(self, cursor: str | None) -> tuple[list[str], str | None]:
        """Keys of tickets created since `cursor` (one page), and the cursor after them."""
        ...

    def fetch(self, key: str) -> RemoteTicket: ...

    def write_back(self, ticket: RemoteTicket, result: TriageResult, marker: str) -> list[str]:
        """Write the mapped fields, the routing and the note; returns what was written where."""
        ...

    def close(self) -> None: ...


def fields_to_write(
    mapping: dict[OurField, FieldTarget], ticket: RemoteTicket, result: TriageResult
) -> tuple[dict[str, Any], list[str]]:
    """(the system's fields to set, the ones kept because they already hold a value)."""
    values = result.model_dump()
    updates: dict[str, Any] = {}
    kept: list[str] = []
    for ours, target in mapping.items():
        wanted = target.encode(str(values[ours]))
        if target.decode(ticket.current.get(target.field)) is None:
            updates[target.field] = wanted
        else:
            kept.append(target.field)
    return updates, kept


def render_note(result: TriageResult, marker: str) -> str:
    """The internal note: the summary, the labels with their confidences, the review verdict."""
    lines = [f"ticketsmith triage: {result.summary}"]
    for name in LABEL_FIELDS:
        lines.append(f"{name}: {getattr(result, name)} ({getattr(result.confidence, name):.0%})")
    verdict = "needs human review: " + ", ".join(result.review_fields) if result.needs_review else "auto-accepted"
    lines.append(f"{verdict} (overall confidence {result.overall_confidence:.0%})")
    lines.append(marker)
    return "\n".join(lines)
