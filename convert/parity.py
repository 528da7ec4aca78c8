"""Parity check: the same labelled split through two models on the real runtime path, field by field."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ticketsmith.progress import track
from ticketsmith.runtime.errors import ModelError
from ticketsmith.runtime.schema import TriageResult
from ticketsmith.runtime.settings import load_settings
from ticketsmith.runtime.taxonomy import load_taxonomy
from ticketsmith.runtime.triager import TicketInput, Triager


class FieldParity(BaseModel):
    agreement: float
    reference_accuracy: float | None
    candidate_accuracy: float | None


class ParityReport(BaseModel):
    reference: str
    candidate: str
    tickets: int
    fields: dict[str, FieldParity]
    prompt_version: str
    ticket_tokens: int
    min_agreement: float
    passed: bool


@dataclass(frozen=True)
class ServedRun:
    """A model's results on the parity tickets, and how it was served."""

    results: list[TriageResult | None]
    prompt_version: str
    ticket_tokens: int


def _triage_all(model: Path, lora: Path | None, taxonomy: Path, rows: list[dict[str, Any]]) -> ServedRun:
    triager = Triager(load_settings(model_path=model, lora_path=lora, taxonomy_path=taxonomy))
    try:
        inputs = [TicketInput(text=str(row["text"]), id=i) for i, row in enumerate(rows)]
        results = track(triager.triage_many(inputs), f"parity {model.name}", len(inputs))
        return ServedRun(
            [r if isinstance(r, TriageResult) else None for r in results],
            triager.prompt_version,
            triager.encoder.ticket_tokens,
        )
    finally:
        triager.close()


def _accuracy(rows: list[dict[str, Any]], results: list[TriageResult | None], field: str) -> float | None:
    labelled = [(row[field], result) for row, result in zip(rows, results, strict=True) if row.get(field)]
    if not labelled:
        return None
    return sum(1 for gold, r in labelled if r is not None and getattr(r, field) == gold) / len(labelled)


def compare(
    reference: Path,
    candidate: Path,
    taxonomy: Path,
    rows: list[dict[str, Any]],
    min_agreement: float,
    candidate_lora: Path | None = None,
) -> ParityReport:
    """Agreement on each categorical field between `reference` and `candidate` (+ LoRA), and both accuracies."""
    reference_run = _triage_all(reference, None, taxonomy, rows)
    candidate_run = _triage_all(candidate, candidate_lora, taxonomy, rows)
    served = (reference_run.prompt_version, reference_run.ticket_tokens)
    if served != (candidate_run.prompt_version, candidate_run.ticket_tokens):  # a bug, not a parity result
        raise ModelError(
            f"parity: the reference is served with {served}, the candidate with "
            f"{(candidate_run.prompt_version, candidate_run.ticket_tokens)}"
        )
    ours, theirs = reference_run.results, candidate_run.results
    fields: dict[str, FieldParity] = {}
    for field in load_taxonomy(taxonomy).fields:
        same = sum(1 for a, b in zip(ours, theirs, strict=True) if a and b and getattr(a, field) == getattr(b, field))
        fields[field] = FieldParity(
            agreement=same / len(rows),
            reference_accuracy=_accuracy(rows, ours, field),
            candidate_accuracy=_accuracy(rows, theirs, field),
        )
    return ParityReport(
        reference=str(reference),
        candidate=str(candidate) + (f" + {candidate_lora}" if candidate_lora else ""),
        tickets=len(rows),
        fields=fields,
        prompt_version=candidate_run.prompt_version,
        ticket_tokens=candidate_run.ticket_tokens,
        min_agreement=min_agreement,
        passed=all(f.agreement >= min_agreement for f in fields.values()),
    )
