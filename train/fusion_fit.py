"""`ticketsmith fuse`: fit how much the LLM and the label head each count, on tickets neither was
trained on, by log loss (stacking), and the review thresholds from the same predictions.

`train` fits the head's own calibration on out-of-fold predictions and gives the LLM no weight (it
has not been measured yet). Once the LLM is fine-tuned and converted, its label log-probabilities
on a labelled split (the dev split: never the tickets it trained on) decide its weight. Every
figure reported afterwards must come from other tickets (the test split)."""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from ticketsmith.runtime.errors import DecodingError, TicketError
from ticketsmith.runtime.fusion import log_softmax
from ticketsmith.runtime.label_head import HEAD_JSON, FieldHead
from ticketsmith.runtime.taxonomy import LabelField
from ticketsmith.runtime.triager import Triager
from ticketsmith.train.label_head import threshold_for_precision

log = logging.getLogger(__name__)
MIN_DECISIONS = 50  # fewer labelled decisions than this: the weights keep their values, with a warning


@dataclass
class Decision:
    """One labelled label decision: the LLM's log-probabilities, the head's margins (up to a
    constant, which softmax ignores) and the gold label's index among the decision's labels."""

    llm: npt.NDArray[np.float64]
    margins: npt.NDArray[np.float64]
    gold: int


def fit_weights(decisions: Sequence[Decision], start: tuple[float, float]) -> tuple[float, float]:
    """(head_weight, llm_weight) >= 0 minimising the mean log loss of the fused distribution."""

    def loss(weights: npt.NDArray[np.float64]) -> float:
        total = 0.0
        for d in decisions:
            total -= float(log_softmax(weights[0] * d.margins + weights[1] * d.llm)[d.gold])
        return total / len(decisions)

    found = minimize(loss, np.array(start), method="L-BFGS-B", bounds=[(0.0, 1e3), (0.0, 1e3)])
    return float(found.x[0]), float(found.x[1])


def collect(
    triager: Triager, rows: Sequence[dict[str, Any]], progress: Callable[[str], None]
) -> dict[LabelField, list[Decision]]:
    """Triage each labelled ticket and keep, per head field, the decisions whose gold label was
    among the labels decided over (a subcategory only when the category was right)."""
    assert triager.head is not None
    out: dict[LabelField, list[Decision]] = {f: [] for f in triager.head.fields}
    for number, row in enumerate(rows, 1):
        try:
            outcome = triager.triage_with_parts(str(row["text"]))
        except (TicketError, DecodingError):
            continue
        for field, spec in triager.head.fields.items():
            gold, part = row.get(field), outcome.parts[field]
            if not isinstance(gold, str) or gold not in part.labels or part.head is None:
                continue
            if field == "subcategory" and row.get("category") != outcome.result.category:
                continue
            margins = part.head / spec.head_weight if spec.head_weight > 0 else np.zeros_like(part.head)
            out[field].append(Decision(part.llm, margins, part.labels.index(gold)))
        if number % 50 == 0:
            progress(f"{number}/{len(rows)} tickets triaged")
    return out


def fuse(
    triager: Triager, rows: Sequence[dict[str, Any]], target_precision: float, progress: Callable[[str], None]
) -> dict[str, dict[str, float]]:
    """Refit each head field's weights and threshold on `rows` and save them into the head's
    head.json; returns what changed, per field."""
    head = triager.head
    assert head is not None
    decisions = collect(triager, rows, progress)
    report: dict[str, dict[str, float]] = {}
    for field, found in decisions.items():
        spec = head.fields[field]
        if len(found) < MIN_DECISIONS:
            log.warning(
                "%s: %d labelled decisions, fewer than %d: its weights stay as they are",
                field,
                len(found),
                MIN_DECISIONS,
            )
            continue
        head_weight, llm_weight = fit_weights(found, (spec.head_weight, max(spec.llm_weight, 0.1)))
        fused = [np.exp(log_softmax(head_weight * d.margins + llm_weight * d.llm)) for d in found]
        confidence = np.array([p.max() for p in fused])
        correct = np.array([int(np.argmax(p)) == d.gold for p, d in zip(fused, found, strict=True)])
        threshold = threshold_for_precision(confidence, correct, target_precision)
        head.fields[field] = FieldHead(
            classes=spec.classes,
            head_weight=head_weight,
            llm_weight=llm_weight,
            review_threshold=threshold,
            fitted_on=f"fuse: {len(found)} labelled decisions of the given split",
        )
        report[field] = {
            "decisions": len(found),
            "head_weight": head_weight,
            "llm_weight": llm_weight,
            "threshold": threshold,
            "accuracy": float(correct.mean()),
        }
    manifest = head.manifest.model_copy(update={"fields": dict(head.fields), "target_precision": target_precision})
    path = head.folder / HEAD_JSON
    staged = path.with_name(HEAD_JSON + ".tmp")
    staged.write_text(manifest.model_dump_json(), encoding="utf-8")
    staged.replace(path)
    return report
