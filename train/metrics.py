"""The figures an IT lead judges a label by: accuracy, macro-F1, calibration (ECE) and the share of
tickets that can be auto-accepted at a review threshold. F1 is scikit-learn's (the `train` extra that
`eval` needs); scikit-learn has no expected calibration error, so that one is computed here."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sklearn.metrics import f1_score

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class PrecisionCurve:
    """Answers sorted by falling confidence: each one's confidence, and the precision of the answers
    up to it (what a threshold at its confidence would accept)."""

    confidence: npt.NDArray[np.float64]
    precision: npt.NDArray[np.float64]

    def widest_at(self, target: float) -> int | None:
        """The last position whose accepted answers reach `target` precision; None if none does."""
        reaching = np.nonzero(self.precision >= target)[0]
        return int(reaching[-1]) if len(reaching) else None


def precision_curve(confidence: npt.NDArray[np.float64], correct: npt.NDArray[np.bool_]) -> PrecisionCurve:
    order = np.argsort(-confidence, kind="stable")
    precision = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    return PrecisionCurve(confidence[order], precision)


class CalibrationBin(BaseModel):
    confidence: float
    accuracy: float
    count: int


class FieldScores(BaseModel):
    scored: int
    accuracy: float
    macro_f1: float
    expected_calibration_error: float
    threshold: float
    coverage: float  # share of the scored tickets whose confidence reaches the threshold
    precision_of_covered: float | None  # accuracy on those tickets
    unseen_in_training: dict[str, int] = {}  # gold labels the model never saw in training: counted wrong

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None and v != {}}


def macro_f1(gold: Sequence[object], predicted: Sequence[object]) -> float:
    """The unweighted mean F1 over every label that is gold or predicted (0 for a label never right)."""
    if not gold:
        return 0.0
    labels = sorted({str(label) for label in (*gold, *predicted)})
    return float(
        f1_score([str(g) for g in gold], [str(p) for p in predicted], labels=labels, average="macro", zero_division=0)
    )


def calibration(confidences: Sequence[float], correct: Sequence[bool]) -> tuple[float, list[CalibrationBin]]:
    """Expected calibration error over ten equal-width bins, and the bins."""
    conf, hits = np.asarray(confidences, dtype=float), np.asarray(correct, dtype=float)
    if len(conf) == 0:
        return 0.0, []
    bins = np.minimum((conf * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    table, error = [], 0.0
    for b in range(CALIBRATION_BINS):
        mask = bins == b
        if mask.any():
            table.append(CalibrationBin(confidence=conf[mask].mean(), accuracy=hits[mask].mean(), count=mask.sum()))
            error += mask.sum() / len(conf) * abs(conf[mask].mean() - hits[mask].mean())
    return float(error), table


def coverage_at(
    confidence: npt.NDArray[np.float64], correct: npt.NDArray[np.bool_], threshold: float
) -> tuple[float, float | None]:
    covered = confidence >= threshold
    share = float(covered.mean()) if len(covered) else 0.0
    return share, (float(correct[covered].mean()) if covered.any() else None)


def scores_of(
    gold: Sequence[object], predicted: Sequence[object], confidence: Sequence[float], threshold: float
) -> FieldScores:
    correct = np.array([g == p for g, p in zip(gold, predicted, strict=True)], dtype=bool)
    conf = np.asarray(confidence, dtype=float)
    ece, _ = calibration(conf.tolist(), correct.tolist())
    share, precision = coverage_at(conf, correct, threshold)
    return FieldScores(
        scored=len(gold),
        accuracy=float(correct.mean()) if len(correct) else 0.0,
        macro_f1=macro_f1(list(gold), list(predicted)),
        expected_calibration_error=ece,
        threshold=threshold,
        coverage=share,
        precision_of_covered=precision,
    )


def score_field(gold: npt.NDArray[np.int64], probabilities: npt.NDArray[np.float64], threshold: float) -> FieldScores:
    """Scores of class-probability rows against gold class indices (-1: a label outside the classes)."""
    predicted = probabilities.argmax(axis=1)
    return scores_of(gold.tolist(), predicted.tolist(), probabilities.max(axis=1).tolist(), threshold)
