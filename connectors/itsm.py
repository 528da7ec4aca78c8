"""What every ITSM connector shares: the connector interface, field mapping, secrets, the triage note.

The mapping from our schema to a system's fields is configuration: each of our fields may go to one
of the system's fields, in the shape that field takes (a plain string, `{"value": ...}`,
`{"name": ...}`, `{"id": ...}`) with optional value translation. A field that already holds a value
(set by a human, or by us in an earlier attempt) is never overwritten: re-running a job writes
nothing new, and a human's later edit stands."""

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
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


class ItsmSettings(BaseModel):
    """What every ITSM source is configured with, beside its address and credentials."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="which connector serves this source; each one's settings fix it")
    fields: dict[OurField, FieldTarget] = Field(default_factory=dict, description="our field -> the system's")
    review_route: dict[str, Any] = Field(
        default_factory=dict,
        description="system fields set on needs-review tickets (when still empty), e.g. the human-triage group",
    )
    review_writes: Literal["confident", "all"] = Field(
        "confident",
        description="on a needs-review ticket, confident: write only the fields at or over their threshold, the "
        "human fills the rest (the note lists every guess); all: write every guess",
    )
    mode: Literal["live", "shadow"] = Field(
        "live",
        description="shadow: triage, audit and count every ticket but write nothing back (no field, note or "
        "label), to try the model on live tickets before it touches them",
    )
    first_poll_days: int = Field(1, ge=0, description="with no cursor yet, start with tickets this recent")
    page_size: int = Field(50, ge=1, le=100)
    timeout_s: float = Field(30.0, gt=0)
    webhook_secret: Secret | None = Field(
        None, description="enables /webhooks/<kind>/<n>: Jira's HMAC secret, or the shared secret of the others"
    )


class RemoteTicket(BaseModel):
    key: str
    text: str
    current: dict[str, Any] = Field(default_factory=dict, description="raw current values of the mapped fields")


class ItsmConnector(Protocol):
    source: str

    @property
    def settings(self) -> ItsmSettings: ...

    def poll(self, cursor: str | None) -> tuple[list[str], str | None]:
        """Keys of tickets created since `cursor` (one page), and the cursor after them."""
        ...

    def fetch(self, key: str) -> RemoteTicket: ...

    def write_back(self, ticket: RemoteTicket, result: TriageResult, marker: str) -> list[str]:
        """Write the mapped fields, the routing and the note; returns what was written where."""
        ...

    def close(self) -> None: ...


def is_empty(value: Any) -> bool:
    """No value: None, "", [], {}, or a lookup object whose every member is empty (`{"name": null}`)."""
    if isinstance(value, dict):
        return all(is_empty(member) for member in value.values())
    return value is None or value == "" or value == []


def get_path(record: dict[str, Any], path: str) -> Any:
    """A field by dotted path: `priority`, `cf.cf_application` (Zoho), `udf_fields.udf_sline_301` (SDP)."""
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def set_path(record: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        record = record.setdefault(part, {})
    record[last] = value


def fields_to_write(
    mapping: dict[OurField, FieldTarget],
    ticket: RemoteTicket,
    result: TriageResult,
    review_route: dict[str, Any] | None = None,
    write_unsure: bool = False,
) -> tuple[dict[str, Any], list[str], list[str]]:
    """(the system's fields to set, nested by dotted path; the paths set; the paths kept because they
    already hold a value).

    On a needs-review ticket the fields under their threshold are left for the human (unless
    `write_unsure`), and `review_route` (e.g. the human-triage group) is set, taking the place of our
    own guess for the same field."""
    values = result.model_dump()  # holds only the fields the taxonomy defines: a mapped field it lacks is skipped
    unsure = set(result.review_fields) if result.needs_review and not write_unsure else set()
    wanted = {
        target.field: target.encode(str(values[ours]))
        for ours, target in mapping.items()
        if ours in values and ours not in unsure
    }
    if result.needs_review and review_route:
        wanted.update(review_route)
    updates: dict[str, Any] = {}
    kept = [path for path in wanted if not is_empty(get_path(ticket.current, path))]
    for path, value in wanted.items():
        if path not in kept:
            set_path(updates, path, value)
    return updates, [path for path in wanted if path not in kept], kept


def render_note(result: TriageResult, marker: str) -> str:
    """The internal note: the summary, every label guessed with its confidence (those under their
    threshold marked, as they may not have been written), the review verdict."""
    lines = [f"ticketsmith triage: {result.summary}"]
    for name in LABEL_FIELDS:
        if getattr(result, name) is not None:
            unsure = ", unsure: for a human to decide" if result.needs_review and name in result.review_fields else ""
            lines.append(f"{name}: {getattr(result, name)} ({getattr(result.confidence, name):.0%}{unsure})")
    verdict = "needs human review: " + ", ".join(result.review_fields) if result.needs_review else "auto-accepted"
    lines.append(f"{verdict} (overall confidence {result.overall_confidence:.0%})")
    lines.append(marker)
    return "\n".join(lines)


def add_note_once(existing: Iterable[str], add: Callable[[str], None], result: TriageResult, marker: str) -> bool:
    """Add the triage note unless a note carrying this job's marker is already there (a retried job)."""
    if any(marker in text for text in existing):
        return False
    add(render_note(result, marker))
    return True


class NoteWritingConnector(ABC):
    """The write-back every connector shares: the mapped fields still empty, then the note once."""

    system: str
    settings: ItsmSettings

    def write_back(self, ticket: RemoteTicket, result: TriageResult, marker: str) -> list[str]:
        write_unsure = self.settings.review_writes == "all"
        updates, paths, kept = fields_to_write(
            self.settings.fields, ticket, result, self.settings.review_route, write_unsure
        )
        where = f"{self.system}:{ticket.key}"
        written = [f"{where}:{name}" for name in self._update(ticket, result, updates, paths)]
        written += [f"{where}:kept-human-value:{path}" for path in kept]
        if add_note_once(self._notes(ticket.key), lambda note: self._add_note(ticket.key, note), result, marker):
            written.append(f"{where}:note")
        return written

    @abstractmethod
    def _update(
        self, ticket: RemoteTicket, result: TriageResult, updates: dict[str, Any], paths: list[str]
    ) -> list[str]:
        """Write `updates` (nothing when empty); returns the names of what was written."""

    @abstractmethod
    def _notes(self, key: str) -> Iterator[str]:
        """The text of every note already on the ticket."""

    @abstractmethod
    def _add_note(self, key: str, note: str) -> None: ...
