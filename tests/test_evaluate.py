import json
from pathlib import Path

import pytest

from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.runtime.triager import Triager
from ticketsmith.train.evaluate import evaluate, read_labelled, write_report
from ticketsmith.train.metrics import CalibrationBin, calibration, macro_f1
from ticketsmith.train.synth import generate


def test_macro_f1_and_calibration_by_hand() -> None:
    assert macro_f1(["a", "a", "b"], ["a", "a", "b"]) == 1.0
    # label a: tp 1, fp 0, fn 1 -> 2/3; label b: tp 1, fp 1, fn 0 -> 2/3
    assert macro_f1(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx(2 / 3)
    error, table = calibration([0.95, 0.95, 0.15, 0.15], [True, False, False, False])
    assert table == [
        CalibrationBin(confidence=0.15, accuracy=0.0, count=2),
        CalibrationBin(confidence=0.95, accuracy=0.5, count=2),
    ]
    assert error == pytest.approx(0.5 * 0.15 + 0.5 * 0.45)


def test_eval_scores_only_the_labelled_fields(triager: Triager, taxonomy: Taxonomy, tmp_path: Path) -> None:
    tickets = [t.model_dump() for t in generate(taxonomy, 6, seed=5)]
    category_only = [{"id": t["id"], "text": t["text"], "category": t["category"]} for t in tickets[:3]]
    data = tmp_path / "dev.jsonl"
    data.write_text("\n".join(json.dumps(t) for t in [*category_only, {"text": "   ", "category": "Hardware"}]))
    rows = read_labelled(data, limit=None)
    report, bins, predictions = evaluate(triager, rows, "dev.jsonl", target_precision=0.9)
    assert list(report.fields) == ["category"]
    assert report.tickets == 4 and report.valid_json_rate == 0.75
    assert report.fields["category"].scored == 3
    assert report.trade_off[0].threshold == 0.0 and report.trade_off[0].auto_accepted == 0.75
    assert set(report.parts["category"]) == {"llm", "fused"}  # no head: the fused decision is the LLM's
    assert report.served_review.auto_accepted == 0.0  # the untrained default never auto-accepts
    write_report(report, bins, predictions, tmp_path / "report")
    for picture in ("reliability.png", "coverage.png"):
        assert (tmp_path / "report" / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (tmp_path / "report" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["gold"] for line in lines] == [{"category": t["category"]} for t in category_only]
    assert "| category | 3 |" in (tmp_path / "report" / "eval.md").read_text()
    full, _, _ = evaluate(triager, tickets, "synthetic", target_precision=0.9)
    assert set(full.fields) == {"category", "subcategory", "application", "urgency", "impact", "assignment_group"}
    for metrics in full.fields.values():
        assert sum(sum(row.values()) for row in metrics.confusion.values()) == metrics.scored == 6
