"""Turn an ITSM export (CSV or JSONL) into ticketsmith's JSONL with a column mapping.

Texts are joined from their columns, HTML and mail signatures are stripped, exact and near-exact
duplicates dropped, rows with no text or unknown labels counted (never silently lost), and the
rest split train/dev/test, stratified by category, with a fixed seed."""

import csv
import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.taxonomy import LABEL_FIELDS, Taxonomy
from ticketsmith.runtime.text_hygiene import strip_html

TARGET_FIELDS = ("id", "text", "summary", *LABEL_FIELDS)
_SIGNATURE = re.compile(
    r"^\s*(--\s*$|best regards|kind regards|regards,|thanks,|thank you,|cheers,|sent from my|"
    r"-----original message-----|from:\s.*sent:)",
    re.IGNORECASE | re.MULTILINE,
)


class ImportReport(BaseModel):
    rows: int = 0
    kept: int = 0
    missing_text: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    unknown_labels: dict[str, int] = Field(default_factory=dict, description="rows rejected per field")
    splits: dict[str, int] = Field(default_factory=dict)


def strip_signature(text: str) -> str:
    """Cut the text at the first signature or quoted-mail marker, unless that would leave nothing."""
    match = _SIGNATURE.search(text)
    if match and text[: match.start()].strip():
        return text[: match.start()]
    return text


def clean_text(text: str) -> str:
    text = strip_signature(strip_html(text))
    return re.sub(r"[ \t]+", " ", re.sub(r"\n\s*\n+", "\n", text)).strip()


def near_key(text: str) -> str:
    """Equal for texts that differ only in case, digits, punctuation or spacing."""
    folded = re.sub(r"[\W_]+", " ", re.sub(r"\d+", "0", text.casefold()))
    return hashlib.sha1(folded.strip().encode()).hexdigest()


def parse_mapping(spec: str) -> dict[str, list[str]]:
    """`text=title+description,category=Category` -> {"text": ["title", "description"], ...}."""
    mapping: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        field, _, columns = part.partition("=")
        if field not in TARGET_FIELDS or not columns:
            raise ConfigError(
                f"--map: '{part}' should be FIELD=COLUMN[+COLUMN], FIELD one of {', '.join(TARGET_FIELDS)}"
            )
        mapping[field] = columns.split("+")
    if "text" not in mapping:
        raise ConfigError("--map needs text=COLUMN (e.g. text=title+description)")
    return mapping


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        if path.suffix.lower() in {".jsonl", ".json", ".ndjson"}:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line, strict=False)
                    except json.JSONDecodeError as exc:
                        raise ConfigError(f"{path}: line {number} is not JSON ({exc.msg})") from None
        else:
            yield from csv.DictReader(handle)


def normalize_label(value: str) -> str:
    """Make an export's label fit the taxonomy's label rules (no quotes, backslashes or controls)."""
    value = re.sub(r"[\x00-\x1f\x7f]+", " ", value).replace('"', "'").replace("\\", "/")
    return re.sub(r"\s+", " ", value).strip()[:80].strip()


def map_row(row: dict[str, Any], mapping: dict[str, list[str]], path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for field, columns in mapping.items():
        missing = [c for c in columns if c not in row]
        if missing:
            raise ConfigError(f"{path}: no column {', '.join(missing)}; columns are: {', '.join(map(str, row))}")
        values = [str(row[c]).strip() for c in columns if row[c] not in (None, "")]
        out[field] = "\n".join(values)
        if field in LABEL_FIELDS:
            out[field] = normalize_label(out[field])
    return out


def import_export(
    path: Path,
    mapping: dict[str, list[str]],
    taxonomy: Taxonomy | None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> tuple[dict[str, list[dict[str, str]]], ImportReport]:
    report = ImportReport()
    seen_exact: set[str] = set()
    seen_near: set[str] = set()
    unknown: Counter[str] = Counter()
    kept: list[dict[str, str]] = []
    for row in read_rows(path):
        report.rows += 1
        record = map_row(row, mapping, path)
        record["text"] = clean_text(record["text"])
        if not record["text"]:
            report.missing_text += 1
            continue
        bad = [f for f in LABEL_FIELDS if taxonomy and not _known(taxonomy, f, record)]
        if bad:
            unknown.update(bad)
            continue
        exact, near = hashlib.sha1(record["text"].encode()).hexdigest(), near_key(record["text"])
        if exact in seen_exact:
            report.exact_duplicates += 1
            continue
        if near in seen_near:
            report.near_duplicates += 1
            continue
        seen_exact.add(exact)
        seen_near.add(near)
        record.setdefault("id", f"row-{report.rows}")
        kept.append(record)
    report.unknown_labels = dict(unknown)
    report.kept = len(kept)
    splits = stratified_split(kept, seed, fractions)
    report.splits = {name: len(rows) for name, rows in splits.items()}
    return splits, report


def _known(taxonomy: Taxonomy, field: str, record: dict[str, str]) -> bool:
    if field not in record:
        return True  # fields the export does not have are skipped, not wrong
    if field == "subcategory":
        return record.get("category") in taxonomy.choices("category") and record[field] in taxonomy.choices(
            "subcategory", record["category"]
        )
    return record[field] in taxonomy.choices(field)  # type: ignore[arg-type]


def stratified_split(
    rows: list[dict[str, str]], seed: int, fractions: tuple[float, float, float]
) -> dict[str, list[dict[str, str]]]:
    rng = random.Random(seed)
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row.get("category", "")].append(row)
    splits: dict[str, list[dict[str, str]]] = {"train": [], "dev": [], "test": []}
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        n_dev = round(len(group) * fractions[1])
        n_test = round(len(group) * fractions[2])
        splits["dev"] += group[:n_dev]
        splits["test"] += group[n_dev : n_dev + n_test]
        splits["train"] += group[n_dev + n_test :]
    for split in splits.values():
        rng.shuffle(split)
    return splits


def derive_taxonomy(path: Path, mapping: dict[str, list[str]], name: str) -> dict[str, Any]:
    """A taxonomy (as YAML-ready data) from the label columns of an export."""
    subcategories: dict[str, set[str]] = defaultdict(set)
    others: dict[str, Counter[str]] = defaultdict(Counter)
    for row in read_rows(path):
        record = map_row(row, mapping, path)
        category = record.get("category", "")
        if not category:
            continue
        subcategories[category].add(record.get("subcategory") or "General")
        for field in ("application", "urgency", "impact", "assignment_group"):
            if record.get(field):
                others[field][record[field]] += 1
    if not subcategories:
        raise ConfigError(f"{path}: no category labels found; map one with category=COLUMN")
    defaults = {
        "application": ["Not Applicable"],
        "urgency": ["High", "Medium", "Low"],
        "impact": ["Many Users", "One User"],
        "assignment_group": ["Service Desk"],
    }
    data: dict[str, Any] = {
        "name": name,
        "categories": [{"name": c, "subcategories": sorted(s)} for c, s in sorted(subcategories.items())],
    }
    for field, default in defaults.items():
        key = (
            "assignment_groups"
            if field == "assignment_group"
            else ("applications" if field == "application" else field)
        )
        data[key] = [label for label, _ in others[field].most_common()] or default
    return data


def write_splits(splits: dict[str, list[dict[str, str]]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_taxonomy(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
