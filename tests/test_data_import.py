import csv
import json
from pathlib import Path

import pytest

from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.train.data_import import (
    clean_text,
    derive_taxonomy,
    import_export,
    parse_mapping,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "it-service-tickets"
ROWS = [
    {"Key": "1", "Title": "VPN down", "Body": "<p>Cannot connect<br>since 8am</p>", "Type": "Network", "Sub": "VPN"},
    {"Key": "2", "Title": "VPN down", "Body": "<p>Cannot connect<br>since 8am</p>", "Type": "Network", "Sub": "VPN"},
    {"Key": "3", "Title": "vpn DOWN!!", "Body": "cannot connect since 9am", "Type": "Network", "Sub": "VPN"},
    {"Key": "4", "Title": "", "Body": "", "Type": "Network", "Sub": "VPN"},
    {"Key": "5", "Title": "Printer", "Body": "jammed", "Type": "Facilities", "Sub": "Printer"},
    {
        "Key": "6",
        "Title": "Laptop",
        "Body": "screen broken\nBest regards,\nAnna\nFinance",
        "Type": "Hardware",
        "Sub": "Laptop",
    },
] + [
    {
        "Key": str(10 + i),
        "Title": f"Issue {chr(65 + i)}{chr(70 + i)}",
        "Body": f"text {chr(65 + i) * 3}",
        "Type": "Hardware" if i % 2 else "Network",
        "Sub": "Laptop" if i % 2 else "VPN",
    }
    for i in range(20)
]
MAP = "id=Key,text=Title+Body,category=Type,subcategory=Sub"


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "export.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)
    return path


def test_clean_text_strips_html_and_signatures() -> None:
    assert clean_text("<p>Cannot connect<br>since 8am</p>") == "Cannot connect\nsince 8am"
    assert clean_text("screen broken\nBest regards,\nAnna") == "screen broken"
    assert clean_text("Best regards only") == "Best regards only"  # never cut to nothing


def test_import_counts_everything_it_drops(export: Path, taxonomy: Taxonomy) -> None:
    splits, report = import_export(export, parse_mapping(MAP), taxonomy, seed=1)
    assert report.rows == len(ROWS)
    assert report.exact_duplicates == 1
    assert report.near_duplicates == 1
    assert report.missing_text == 1
    assert report.unknown_labels == {"category": 1, "subcategory": 1}  # "Facilities" / "Printer"
    assert report.kept == len(ROWS) - 4
    assert sum(report.splits.values()) == report.kept
    kept = [row for rows in splits.values() for row in rows]
    assert {row["category"] for row in splits["train"]} == {"Network", "Hardware"}
    laptop = next(row for row in kept if row["id"] == "6")
    assert laptop["text"] == "Laptop\nscreen broken"
    assert splits == import_export(export, parse_mapping(MAP), taxonomy, seed=1)[0]
    assert splits != import_export(export, parse_mapping(MAP), taxonomy, seed=2)[0]


def test_derived_taxonomy_loads_and_accepts_every_row(export: Path) -> None:
    data = derive_taxonomy(export, parse_mapping(MAP), "derived")
    derived = Taxonomy.model_validate(data)
    assert set(derived.choices("category")) == {"Network", "Facilities", "Hardware"}
    _, report = import_export(export, parse_mapping(MAP), derived)
    assert report.unknown_labels == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("category=Type", "needs text=COLUMN"),
        ("text=Title,colour=Red", "FIELD=COLUMN"),
        ("text=Nope", "no column Nope"),
    ],
)
def test_bad_mappings_are_clear(export: Path, taxonomy: Taxonomy, spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        import_export(export, parse_mapping(spec), taxonomy)


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared real-ticket data not present")
def test_real_export_with_derived_taxonomy(tmp_path: Path) -> None:
    sample = tmp_path / "tickets.jsonl"
    lines = (SHARED / "dev.jsonl").read_text(encoding="utf-8").splitlines()[:600]
    sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = parse_mapping("id=id,text=text,category=category")
    derived = Taxonomy.model_validate(derive_taxonomy(sample, mapping, "it-service-tickets"))
    assert len(derived.categories) == 8
    splits, report = import_export(sample, mapping, derived)
    assert report.kept + report.exact_duplicates + report.near_duplicates + report.missing_text == 600
    assert all(json.dumps(row) for rows in splits.values() for row in rows)
