import csv
import json
import subprocess
import sys
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


def _write_bytes(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_european_csv_with_semicolons_and_windows_1252_is_sniffed(tmp_path: Path) -> None:
    lines = ["Nr;Betreff;Beschreibung;Gruppe"]
    rooms = ["Büro", "Flur", "Empfang", "Lager", "Labor", "Keller"]
    lines += [f"{i};Drucker im {r};Der Drucker druckt nicht, bitte prüfen;Arbeitsplatz" for i, r in enumerate(rooms)]
    people = ["Jörg", "Anna", "Müller", "Weiß", "Öztürk", "Schäfer"]
    lines += [f"{i};Kennwort von {p} läuft ab;Passwort zurücksetzen, danke;IAM-Team" for i, p in enumerate(people, 6)]
    path = _write_bytes(tmp_path / "export.csv", "\r\n".join(lines) + "\r\n", "cp1252")
    mapping = parse_mapping("id=Nr,text=Betreff+Beschreibung,assignment_group=Gruppe")
    derived = Taxonomy.model_validate(derive_taxonomy(path, mapping, "de"))
    assert derived.fields == ("assignment_group",)
    splits, report = import_export(path, mapping, derived)
    assert report.format is not None and (report.format.encoding, report.format.delimiter) == ("cp1252", ";")
    assert report.kept == 12 and report.stratified_by == "assignment_group"
    rows = {row["id"]: row for rows in splits.values() for row in rows}
    assert rows["0"]["text"] == "Drucker im Büro\nDer Drucker druckt nicht, bitte prüfen"
    assert rows["7"]["assignment_group"] == "IAM-Team"
    assert {row["assignment_group"] for row in splits["dev"]} == {"Arbeitsplatz", "IAM-Team"}  # stratified


def test_tab_separated_utf8_and_overrides(tmp_path: Path) -> None:
    text = "id\ttext\tcategory\n1\tVPN, down; again\tNetwork\n2\tlaptop broken\tHardware\n"
    path = _write_bytes(tmp_path / "export.tsv", text)
    mapping = parse_mapping("id=id,text=text,category=category")
    _, report = import_export(path, mapping, None)
    assert report.format is not None and report.format.delimiter == "\t" and report.kept == 2
    with pytest.raises(ConfigError, match=r"no column id; .*read with delimiter .,. and utf-8; set --delimiter"):
        import_export(path, mapping, None, delimiter=",")
    with pytest.raises(ConfigError, match="unknown encoding"):
        import_export(path, mapping, None, encoding="klingon")
    _, latin = import_export(path, mapping, None, encoding="latin-1", delimiter="tab")
    assert latin.format is not None and latin.format.encoding == "latin-1" and latin.kept == 2


def test_huge_field_imports_and_binary_file_is_refused(tmp_path: Path) -> None:
    body = "the mail goes on " * 20_000  # 340,000 characters, over Python csv's 131,072 default
    path = tmp_path / "export.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["Key", "Body", "Type"], ["1", body, "Network"], ["2", "short", "Hardware"]])
    _, report = import_export(path, parse_mapping("id=Key,text=Body,category=Type"), None)
    assert report.kept == 2
    binary = tmp_path / "export.csv"
    binary.write_bytes(b"PK\x03\x04\x00\x00binary\x00" * 100)
    with pytest.raises(ConfigError, match="binary file"):
        import_export(binary, parse_mapping("text=Body"), None)


def test_repeated_headers_are_never_silently_merged(tmp_path: Path) -> None:
    path = _write_bytes(
        tmp_path / "jira.csv",
        "Issue key,Summary,Component/s,Component/s\nIT-1,VPN down,Network,Remote\nIT-2,Screen cracked,Hardware,\n",
    )
    with pytest.raises(ConfigError, match=r"'Component/s' appears 2 times; map one of Component/s#1, Component/s#2"):
        import_export(path, parse_mapping("id=Issue key,text=Summary,assignment_group=Component/s"), None)
    mapping = parse_mapping("id=Issue key,text=Summary+Component/s#2,category=Component/s#1")
    splits, _ = import_export(path, mapping, None)
    rows = {row["id"]: row for rows in splits.values() for row in rows}
    assert rows["IT-1"]["text"] == "VPN down\nRemote" and rows["IT-1"]["category"] == "Network"


def test_report_names_unknown_values_and_keeps_differently_labelled_near_duplicates(
    tmp_path: Path, taxonomy: Taxonomy
) -> None:
    rows = [
        {"text": "Outlook keeps crashing", "category": "Software"},
        {"text": "outlook keeps crashing!", "category": "Software"},  # near duplicate, same label: dropped
        {"text": "Outlook keeps crashing.", "category": "Hardware"},  # near duplicate, other label: kept
        {"text": "coffee machine empty", "category": "Facilities"},
        {"text": "coffee machine broken", "category": "Facilities"},
        {"text": "door stuck", "category": "Kitchen"},
        {"text": "no label here", "category": ""},
    ]
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    _, report = import_export(path, parse_mapping("text=text,category=category"), taxonomy)
    assert report.near_duplicates == 1 and report.duplicates_by_label == {"Software": 1}
    assert report.label_conflicts == 1
    assert report.unknown_values == {"category": {"Facilities": 2, "Kitchen": 1}}
    assert report.missing_labels == {"category": 1}
    assert report.kept == 2


def test_an_import_that_keeps_nothing_exits_non_zero(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps({"text": "coffee machine empty", "category": "Facilities"}) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "ticketsmith", "data", "import", str(path), "--map", "text=text,category=category"]
    done = subprocess.run([*command, "--out", str(tmp_path / "out")], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "kept 0 of 1 rows: 1 with a category the taxonomy lacks ('Facilities' x1)" in done.stderr
    out2 = ["--out", str(tmp_path / "out2")]
    groups_only = subprocess.run(
        [*command[:-1], "text=text,assignment_group=category", "--derive-taxonomy", str(tmp_path / "t.yaml"), *out2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert groups_only.returncode == 0, groups_only.stderr
    assert json.loads(groups_only.stdout)["kept"] == 1
    assert "assignment_groups:\n- Facilities" in (tmp_path / "t.yaml").read_text()
