"""A stand-in triager for tests about connectors, workers and HTTP (auth, limits, the OpenAPI
contract), not about labels.

It answers at once with the taxonomy's first labels, and refuses text as the runtime does (the same
`clean_ticket_text`), so the HTTP side and the workers see the same results and errors they would see
from the model. `unsure` names fields it answers under their review threshold, as an untrained model
does: the ticket then goes to review."""

import time
from collections.abc import Iterable
from typing import Any

from ticketsmith.runtime.schema import TriageObserver, TriageResult
from ticketsmith.runtime.taxonomy import LABEL_FIELDS, Taxonomy
from ticketsmith.runtime.text_hygiene import clean_ticket_text

UNSURE_CONFIDENCE = 0.05  # under every field's review threshold


class FakeTriager:
    def __init__(self, taxonomy: Taxonomy, unsure: Iterable[str] = ()) -> None:
        self.taxonomy = taxonomy
        self.unsure = [field for field in LABEL_FIELDS if field in set(unsure)]
        self.texts: list[str] = []
        self.loaded = True
        self.trained_fields: list[str] = list(taxonomy.fields)  # it answers as a trained model would
        self.observers: list[TriageObserver] = []

    def triage(self, text: str, ticket_id: str | int | None = None) -> TriageResult:
        started = time.perf_counter()
        result = None
        try:
            result = self._answer(text, ticket_id)
            return result
        finally:
            for observer in self.observers:
                observer(time.perf_counter() - started, result)

    def _answer(self, text: str, ticket_id: str | int | None) -> TriageResult:
        cleaned, truncated = clean_ticket_text(text, max_chars=1_000_000)
        self.texts.append(cleaned)
        category = self.taxonomy.choices("category")[0]
        labels: dict[str, str] = {
            field: self.taxonomy.choices(field, category if field == "subcategory" else None)[0]
            for field in LABEL_FIELDS
        }
        confidence: dict[str, float] = {"summary": 1.0, **dict.fromkeys(labels, 1.0)}
        confidence |= dict.fromkeys(self.unsure, UNSURE_CONFIDENCE)
        result: dict[str, Any] = {
            "summary": "A ticket the fake triager did not read.",
            **labels,
            "id": ticket_id,
            "confidence": confidence,
            "overall_confidence": min(confidence.values()),
            "needs_review": bool(self.unsure),
            "review_fields": list(self.unsure),
            "truncated": truncated,
            "input_tokens": len(cleaned.split()),
        }
        return TriageResult.model_validate(result, context={"taxonomy": self.taxonomy})

    def model_info(self) -> dict[str, str]:
        return {"model": "fake.gguf", "taxonomy": self.taxonomy.fingerprint(), "prompt_version": "fake"}

    def model_label(self) -> str:
        return "fake.gguf"
