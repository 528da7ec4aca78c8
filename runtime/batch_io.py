"""JSONL batch input for `ticketsmith triage --input`: lines of {"id": ..., "text": ...}."""

import json
from collections.abc import Iterator
from typing import IO

from pydantic import BaseModel, ConfigDict, ValidationError

from ticketsmith.runtime.schema import TriageError
from ticketsmith.runtime.triager import TicketInput
from ticketsmith.runtime.yaml_config import format_location


class TicketLine(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | int | None = None
    text: str


def read_ticket_lines(stream: IO[bytes]) -> Iterator[TicketInput | TriageError]:
    """One item per non-blank line; a line that is not a ticket becomes a TriageError naming it."""
    for number, raw in enumerate(stream, start=1):
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            yield TriageError(line=number, error=f"line {number} is not JSON: {exc.msg}")
            continue
        try:
            ticket = TicketLine.model_validate(data)
        except ValidationError as exc:
            ticket_id = data.get("id") if isinstance(data, dict) else None
            safe_id = ticket_id if isinstance(ticket_id, str | int) else None
            problems = "; ".join(f"{format_location(tuple(e['loc']))}: {e['msg']}" for e in exc.errors())
            message = f'line {number} is not {{"id": string or integer, "text": string}} ({problems})'
            yield TriageError(id=safe_id, line=number, error=message)
            continue
        yield TicketInput(text=ticket.text, id=ticket.id)
