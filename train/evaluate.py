"""`ticketsmith eval`: run the real runtime path on a labelled split and tell whether the model is
good enough to switch on: per-field accuracy, macro-F1 and confusion, JSON validity, calibration
(expected calibration error and a reliability diagram) and the review trade-off."""

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from ticketsmith.progress import track
from ticketsmith.runtime.errors import DecodingError, TicketError
from ticketsmith.runtime.fusion import FieldParts
from ticketsmith.runtime.schema import TriageResult
from ticketsmith.runtime.taxonomy import LabelField
from ticketsmith.runtime.triager import Triager
from ticketsmith.train.metrics import FieldScores, calibration, macro_f1, precision_curve, scores_of

THRESHOLDS = [round(t, 2) for t in np.arange(0.0, 1.0, 0.05)]
PARTS = ("llm", "head", "fused")


class FieldMetrics(BaseModel):
    scored: int
    accuracy: float
    macro_f1: float
    expected_calibration_error: float
    confusion: dict[str, dict[str, int]] = Field(description="gold label -> predicted label -> count")
    unseen_gold: dict[str, int] = Field(default_factory=dict, description="gold labels outside the taxonomy")


class TradeOff(BaseModel):
    threshold: float
    auto_accepted: float = Field(description="share of tickets whose confidence is at least the threshold")
    accuracy: float | None = Field(description="share of auto-accepted tickets with every scored field right")


class PartScores(BaseModel):
    """One part's figures on one field; coverage_at_target uses the best threshold for this very
    data (an upper bound, not a served figure)."""

    scores: FieldScores
    coverage_at_target: float


class ServedReview(BaseModel):
    """The review as served: the model's own thresholds, fitted before this data was seen."""

    auto_accepted: float = Field(description="share of tickets with needs_review false")
    precision: float | None = Field(description="share of those with every scored field right")


class EvalReport(BaseModel):
    model: str
    data: str
    tickets: int
    valid_json_rate: float
    fields: dict[str, FieldMetrics]
    parts: dict[str, dict[str, PartScores]] = Field(
        default_factory=dict, description="field -> llm | head | fused -> figures (head: only where there is one)"
    )
    served_review: ServedReview
    trade_off: list[TradeOff]
    target_precision: float
    threshold_for_target: float | None = Field(description="lowest threshold reaching the target, if any")


def evaluate(
    triager: Triager, rows: Iterable[dict[str, Any]], data_name: str, target_precision: float
) -> tuple[EvalReport, dict[str, list[tuple[float, float, int]]], list[dict[str, Any]]]:
    """The report, each field's reliability bins, and one line per ticket for error analysis."""
    rows = list(rows)
    fields_defined = triager.taxonomy.fields
    scored_fields: list[str] = [f for f in fields_defined if any(f in row for row in rows)]  # absent: skipped
    outcomes: list[tuple[TriageResult, dict[str, FieldParts]] | None] = []
    for row in track(rows, "eval", len(rows)):
        try:
            outcome = triager.triage_with_parts(row["text"], row.get("id"))
            outcomes.append((outcome.result, outcome.parts))
        except (TicketError, DecodingError):  # counted against the validity rate
            outcomes.append(None)
    valid = [(row, out[0], out[1]) for row, out in zip(rows, outcomes, strict=True) if out is not None]
    fields: dict[str, FieldMetrics] = {}
    parts: dict[str, dict[str, PartScores]] = {}
    bins: dict[str, list[tuple[float, float, int]]] = {}
    for field in scored_fields:
        triples = [(row[field], res, p) for row, res, p in valid if field in row]
        gold = [g for g, _, _ in triples]
        predicted = [getattr(res, field) for _, res, _ in triples]
        correct = [g == p for g, p in zip(gold, predicted, strict=True)]
        ece, table = calibration([getattr(res.confidence, field) for _, res, _ in triples], correct)
        bins[field] = [(b.confidence, b.accuracy, b.count) for b in table]
        confusion: dict[str, Counter[str]] = {}
        for g, p in zip(gold, predicted, strict=True):
            confusion.setdefault(g, Counter())[p] += 1
        known = set(triager.taxonomy.choices(cast(LabelField, field))) if field != "subcategory" else None
        fields[field] = FieldMetrics(
            scored=len(triples),
            accuracy=float(np.mean(correct)) if correct else 0.0,
            macro_f1=macro_f1(gold, predicted),
            expected_calibration_error=ece,
            confusion={g: dict(c) for g, c in confusion.items()},
            unseen_gold=dict(Counter(g for g in gold if known is not None and g not in known)),
        )
        parts[field] = part_scores(field, gold, [p for _, _, p in triples], target_precision)
    trade_off = review_trade_off([(row, res) for row, res, _ in valid], scored_fields, len(rows))
    reached = [t.threshold for t in trade_off if t.accuracy is not None and t.accuracy >= target_precision]
    accepted = [
        all(row.get(f) == getattr(res, f) for f in scored_fields if f in row)
        for row, res, _ in valid
        if not res.needs_review
    ]
    report = EvalReport(
        model=triager.model_label(),
        data=data_name,
        tickets=len(rows),
        valid_json_rate=len(valid) / len(rows) if rows else 0.0,
        fields=fields,
        parts=parts,
        served_review=ServedReview(
            auto_accepted=len(accepted) / len(rows) if rows else 0.0,
            precision=float(np.mean(accepted)) if accepted else None,
        ),
        trade_off=trade_off,
        target_precision=target_precision,
        threshold_for_target=min(reached) if reached else None,
    )
    lines = [
        {
            "id": row.get("id"),
            "gold": {f: row[f] for f in scored_fields if f in row},
            "predicted": {f: getattr(res, f) for f in scored_fields},
            "confidence": {f: round(getattr(res.confidence, f), 4) for f in scored_fields},
            "needs_review": res.needs_review,
        }
        for row, res, _ in valid
    ]
    return report, bins, lines


def part_scores(
    field: str, gold: list[str], decisions: list[dict[str, FieldParts]], target: float
) -> dict[str, PartScores]:
    """Each part's answer and confidence on `field`: its own argmax over the labels of the decision
    (a subcategory's: those of the category the served model chose)."""
    out: dict[str, PartScores] = {}
    for name in PARTS:
        predicted, confidence = [], []
        for decision in decisions:
            log_probs = getattr(decision[field], name)
            if log_probs is None:
                break
            best = int(np.argmax(log_probs))
            predicted.append(decision[field].labels[best])
            confidence.append(float(np.exp(log_probs[best])))
        else:
            scores = scores_of(gold, predicted, confidence, threshold=0.0)
            correct = np.array([g == p for g, p in zip(gold, predicted, strict=True)])
            out[name] = PartScores(
                scores=scores, coverage_at_target=best_coverage(np.array(confidence), correct, target)
            )
    return out


def best_coverage(confidence: npt.NDArray[np.float64], correct: npt.NDArray[np.bool_], target: float) -> float:
    """The largest share of tickets that some threshold accepts at `target` precision on this data."""
    widest = precision_curve(confidence, correct).widest_at(target)
    return 0.0 if widest is None else (widest + 1) / len(confidence)


def review_trade_off(valid: list[tuple[dict[str, Any], TriageResult]], fields: list[str], total: int) -> list[TradeOff]:
    """A ticket is auto-accepted when its lowest scored-field confidence reaches the threshold."""
    confidence = [min(getattr(res.confidence, f) for f in fields) for _, res in valid]
    correct = [all(row.get(f, getattr(res, f)) == getattr(res, f) for f in fields) for row, res in valid]
    out = []
    for threshold in THRESHOLDS:
        accepted = [ok for c, ok in zip(confidence, correct, strict=True) if c >= threshold]
        out.append(
            TradeOff(
                threshold=threshold,
                auto_accepted=len(accepted) / total if total else 0.0,
                accuracy=float(np.mean(accepted)) if accepted else None,
            )
        )
    return out


def plot_reliability(bins: dict[str, list[tuple[float, float, int]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(bins), figsize=(3.2 * len(bins), 3.4), squeeze=False)
    for axis, (field, table) in zip(axes[0], bins.items(), strict=True):
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        if table:
            conf, acc, count = zip(*table, strict=True)
            axis.scatter(conf, acc, s=[20 + 200 * c / max(count) for c in count])
            axis.plot(conf, acc)
        axis.set(title=field, xlabel="confidence", xlim=(0, 1), ylim=(0, 1))
    axes[0][0].set_ylabel("accuracy")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_coverage(tickets: list[dict[str, Any]], fields: list[str], path: Path) -> None:
    """Precision of the auto-accepted tickets against the share accepted, as the threshold on the
    lowest scored-field confidence falls: where the curve crosses a target precision is what the
    review rule can accept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confidence = np.array([min(t["confidence"][f] for f in fields if f in t["gold"]) for t in tickets])
    correct = np.array([all(t["gold"][f] == t["predicted"][f] for f in t["gold"]) for t in tickets])
    figure, axis = plt.subplots(figsize=(4.4, 3.6))
    if len(confidence):
        axis.plot(np.arange(1, len(confidence) + 1) / len(confidence), precision_curve(confidence, correct).precision)
    axis.set(xlabel="auto-accepted share", ylabel="precision of accepted", xlim=(0, 1), ylim=(0, 1.02))
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(
    report: EvalReport, bins: dict[str, list[tuple[float, float, int]]], tickets: list[dict[str, Any]], out: Path
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as handle:
        for ticket in tickets:
            handle.write(json.dumps(ticket, ensure_ascii=False) + "\n")
    plot_reliability(bins, out / "reliability.png")
    plot_coverage(tickets, list(report.fields), out / "coverage.png")
    served = report.served_review
    lines = [
        f"# Evaluation of {report.model} on {report.data}",
        "",
        f"{report.tickets} tickets; valid JSON answers: {report.valid_json_rate:.1%}",
        "",
        "| field | scored | accuracy | macro-F1 | ECE |",
        "|---|---|---|---|---|",
    ]
    for field, m in report.fields.items():
        lines.append(
            f"| {field} | {m.scored} | {m.accuracy:.1%} | {m.macro_f1:.3f} | {m.expected_calibration_error:.3f} |"
        )
    lines += ["", "## The parts: LLM alone, label head alone, fused (served)", ""]
    lines += ["| field | part | accuracy | macro-F1 | ECE | coverage at target (best threshold here) |"]
    lines += ["|---|---|---|---|---|---|"]
    for field, by_part in report.parts.items():
        for name, part in by_part.items():
            sc = part.scores
            lines.append(
                f"| {field} | {name} | {sc.accuracy:.1%} | {sc.macro_f1:.3f} | {sc.expected_calibration_error:.3f} "
                f"| {part.coverage_at_target:.1%} |"
            )
    precision = f"{served.precision:.1%}" if served.precision is not None else "-"
    lines += [
        "",
        f"As served (the model's own review thresholds): **{served.auto_accepted:.1%}** of tickets auto-accepted, "
        f"**{precision}** of them with every scored field right.",
    ]
    lines += ["", "![reliability diagram](reliability.png)", "", "![coverage and precision](coverage.png)"]
    lines += ["", "## Review trade-off (one threshold on the lowest scored-field confidence)", ""]
    lines += ["| threshold | auto-accepted | accuracy of accepted |", "|---|---|---|"]
    for t in report.trade_off:
        accuracy = f"{t.accuracy:.1%}" if t.accuracy is not None else "-"
        lines.append(f"| {t.threshold:.2f} | {t.auto_accepted:.1%} | {accuracy} |")
    target = report.threshold_for_target
    lines += [
        "",
        f"Threshold for {report.target_precision:.0%} precision: "
        + (f"**{target:.2f}**" if target is not None else "not reached at any threshold"),
        "",
    ]
    for field, m in report.fields.items():
        labels = sorted(set(m.confusion) | {p for row in m.confusion.values() for p in row})
        if len(labels) > 20:
            continue
        lines += [f"## Confusion: {field} (rows gold, columns predicted)", ""]
        lines.append("| | " + " | ".join(labels) + " |")
        lines.append("|---" * (len(labels) + 1) + "|")
        for gold in labels:
            counts = m.confusion.get(gold, {})
            lines.append(f"| {gold} | " + " | ".join(str(counts.get(p, 0)) for p in labels) + " |")
        lines.append("")
    (out / "eval.md").write_text("\n".join(lines), encoding="utf-8")


def read_labelled(path: Path, limit: int | None) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line, strict=False)
                if isinstance(row, dict) and isinstance(row.get("text"), str):
                    rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    return rows
