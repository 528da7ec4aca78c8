"""JSONL batch input for `ticketsmith triage --input`: lines of {"id": ..., "text": ...}."""

import json
import logging
from collections.abc import Iterator
from typing import IO

from pydantic import BaseModel, ConfigDict, ValidationError

from ticketsmith.runtime.schema import TriageError
from ticketsmith.runtime.triager import TicketInput
from ticketsmith.runtime.yaml_config import format_location

logger = logging.getLogger(__name__)


class TicketLine(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | int | None = None
    text: str


def read_ticket_lines(stream: IO[bytes]) -> Iterator[TicketInput | TriageError]:
    """One item per non-blank line. A line that is not JSON at all is taken as the ticket's text (no
    ticket is dropped for its format); a JSON line without a string "text" becomes a TriageError."""
    for number, raw in enumerate(stream, start=1):
        line = raw.decode("utf-8", errors="replace").strip()
        if not line:
            continue
        try:
            data = json.loads(line, strict=False)  # strict=False: raw control characters inside strings
        except json.JSONDecodeError as exc:
            logger.warning("line %d is not JSON (%s): triaged as plain text", number, exc.msg)
            yield TicketInput(text=line)
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
