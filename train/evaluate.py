"""`ticketsmith eval`: run the real runtime path on a labelled split and tell whether the model is
good enough to switch on: per-field accuracy, macro-F1 and confusion, JSON validity, calibration
(expected calibration error and a reliability diagram) and the review trade-off."""

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from ticketsmith.runtime.errors import DecodingError, TicketError
from ticketsmith.runtime.schema import TriageResult
from ticketsmith.runtime.taxonomy import LABEL_FIELDS
from ticketsmith.runtime.triager import Triager

THRESHOLDS = [round(t, 2) for t in np.arange(0.0, 1.0, 0.05)]
CALIBRATION_BINS = 10


class FieldMetrics(BaseModel):
    scored: int
    accuracy: float
    macro_f1: float
    expected_calibration_error: float
    confusion: dict[str, dict[str, int]] = Field(description="gold label -> predicted label -> count")


class TradeOff(BaseModel):
    threshold: float
    auto_accepted: float = Field(description="share of tickets whose confidence is at least the threshold")
    accuracy: float | None = Field(description="share of auto-accepted tickets with every scored field right")


class EvalReport(BaseModel):
    model: str
    data: str
    tickets: int
    valid_json_rate: float
    fields: dict[str, FieldMetrics]
    trade_off: list[TradeOff]
    target_precision: float
    threshold_for_target: float | None = Field(description="lowest threshold reaching the target, if any")


def macro_f1(gold: list[str], predicted: list[str]) -> float:
    scores = []
    for label in sorted(set(gold) | set(predicted)):
        tp = sum(g == p == label for g, p in zip(gold, predicted, strict=True))
        fp = sum(p == label != g for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == label != p for g, p in zip(gold, predicted, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def calibration(confidences: list[float], correct: list[bool]) -> tuple[float, list[tuple[float, float, int]]]:
    """Expected calibration error and per-bin (mean confidence, accuracy, count)."""
    conf, hits = np.array(confidences), np.array(correct, dtype=float)
    bins = np.minimum((conf * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    table, error = [], 0.0
    for b in range(CALIBRATION_BINS):
        mask = bins == b
        if mask.any():
            table.append((float(conf[mask].mean()), float(hits[mask].mean()), int(mask.sum())))
            error += mask.sum() / len(conf) * abs(conf[mask].mean() - hits[mask].mean())
    return float(error), table


def evaluate(
    triager: Triager, rows: Iterable[dict[str, Any]], data_name: str, target_precision: float
) -> tuple[EvalReport, dict[str, list[tuple[float, float, int]]]]:
    rows = list(rows)
    scored_fields: list[str] = [f for f in LABEL_FIELDS if any(f in row for row in rows)]  # absent: skipped
    results: list[TriageResult | None] = []
    for row in rows:
        try:
            results.append(triager.triage(row["text"], row.get("id")))
        except (TicketError, DecodingError):  # counted against the validity rate
            results.append(None)
    valid = [(row, res) for row, res in zip(rows, results, strict=True) if res is not None]
    fields: dict[str, FieldMetrics] = {}
    bins: dict[str, list[tuple[float, float, int]]] = {}
    for field in scored_fields:
        pairs = [(row[field], res) for row, res in valid if field in row]
        gold = [g for g, _ in pairs]
        predicted = [getattr(res, field) for _, res in pairs]
        correct = [g == p for g, p in zip(gold, predicted, strict=True)]
        ece, bins[field] = calibration([getattr(res.confidence, field) for _, res in pairs], correct)
        confusion: dict[str, Counter[str]] = {}
        for g, p in zip(gold, predicted, strict=True):
            confusion.setdefault(g, Counter())[p] += 1
        fields[field] = FieldMetrics(
            scored=len(pairs),
            accuracy=float(np.mean(correct)) if correct else 0.0,
            macro_f1=macro_f1(gold, predicted),
            expected_calibration_error=ece,
            confusion={g: dict(c) for g, c in confusion.items()},
        )
    trade_off = review_trade_off(valid, scored_fields, len(rows))
    reached = [t.threshold for t in trade_off if t.accuracy is not None and t.accuracy >= target_precision]
    report = EvalReport(
        model=str(triager.model_path),
        data=data_name,
        tickets=len(rows),
        valid_json_rate=len(valid) / len(rows) if rows else 0.0,
        fields=fields,
        trade_off=trade_off,
        target_precision=target_precision,
        threshold_for_target=min(reached) if reached else None,
    )
    return report, bins


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


def write_report(report: EvalReport, bins: dict[str, list[tuple[float, float, int]]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    plot_reliability(bins, out / "reliability.png")
    lines = [
        f"# Evaluation of {Path(report.model).name} on {report.data}",
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
    lines += ["", "![reliability diagram](reliability.png)", "", "## Review trade-off", ""]
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
