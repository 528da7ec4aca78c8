"""The hand-written test set of the default taxonomy (bench/data/handwritten) is well formed: every
label from the taxonomy, the subcategory its category's, 20 tickets per subcategory, unique ids; and
the sample tickets' expected labels cover every sample."""

import json
from collections import Counter
from pathlib import Path

from ticketsmith.runtime.schema import Ticket
from ticketsmith.runtime.taxonomy import Taxonomy

REPO = Path(__file__).resolve().parent.parent
HANDWRITTEN = REPO / "bench" / "data" / "handwritten"
PER_SUBCATEGORY = 20


def _lines(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_subcategory_has_its_twenty_tickets_with_taxonomy_labels(taxonomy: Taxonomy) -> None:
    rows = [row for path in sorted(HANDWRITTEN.glob("*.jsonl")) for row in _lines(path)]
    for row in rows:
        labels = {k: v for k, v in row.items() if k not in ("id", "text")}
        Ticket.model_validate(labels, context={"taxonomy": taxonomy})  # raises on a label outside the taxonomy
        assert row["text"].strip() and len(row["text"]) < 2_000
    ids = Counter(row["id"] for row in rows)
    assert not [i for i, n in ids.items() if n > 1]
    per_subcategory = Counter((row["category"], row["subcategory"]) for row in rows)
    expected = {(c.name, s.name) for c in taxonomy.categories for s in c.subcategories}
    assert set(per_subcategory) == expected
    assert set(per_subcategory.values()) == {PER_SUBCATEGORY}
    assert len({row["text"] for row in rows}) == len(rows)


def test_the_sample_tickets_have_expected_labels(taxonomy: Taxonomy) -> None:
    samples = _lines(REPO / "examples" / "tickets.jsonl")
    labels = _lines(REPO / "examples" / "tickets.labels.jsonl")
    assert [s["id"] for s in samples] == [label["id"] for label in labels]
    for label in labels:
        fields = {k: v for k, v in label.items() if k != "id"}
        Ticket.model_validate({"summary": "x", **fields}, context={"taxonomy": taxonomy})
