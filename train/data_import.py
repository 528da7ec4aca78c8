"""Turn an ITSM export (CSV or JSONL) into ticketsmith's JSONL with a column mapping.

Texts are joined from their columns, HTML and mail signatures are stripped, exact and near-exact
duplicates with the same labels dropped (never one whose label differs), rows with no text or an
unknown or missing label counted and named (never silently lost), and the rest split
train/dev/test, stratified by the first label field the export has, with a fixed seed. An export
may label any subset of the fields; its derived taxonomy then defines only those."""

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from ticketsmith.progress import track
from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.taxonomy import LABEL_FIELDS, LABEL_SET_KEYS, LabelField, Taxonomy
from ticketsmith.runtime.text_hygiene import strip_html
from ticketsmith.train.export_reader import ExportFormat, ExportRows, open_export

TARGET_FIELDS = ("id", "text", "summary", *LABEL_FIELDS)
SHOWN_VALUES = 10  # unknown labels named per field in the report
_SIGNATURE = re.compile(
    r"^\s*(--\s*$|best regards|kind regards|regards,|thanks,|thank you,|cheers,|sent from my|"
    r"-----original message-----|from:\s.*sent:)",
    re.IGNORECASE | re.MULTILINE,
)


class ImportReport(BaseModel):
    rows: int = 0
    kept: int = 0
    format: ExportFormat | None = None
    stratified_by: str | None = None
    missing_text: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    duplicates_by_label: dict[str, int] = Field(
        default_factory=dict, description="exact and near duplicates dropped, per label of the split field"
    )
    label_conflicts: int = Field(0, description="duplicate texts kept because their labels differ")
    missing_labels: dict[str, int] = Field(default_factory=dict, description="rows rejected per field: no label")
    unknown_labels: dict[str, int] = Field(default_factory=dict, description="rows rejected per field")
    unknown_values: dict[str, dict[str, int]] = Field(
        default_factory=dict, description=f"the {SHOWN_VALUES} most frequent unknown labels of each field"
    )
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


def normalize_label(value: str) -> str:
    """Make an export's label fit the taxonomy's label rules (no quotes, backslashes or controls)."""
    value = re.sub(r"[\x00-\x1f\x7f]+", " ", value).replace('"', "'").replace("\\", "/")
    return re.sub(r"\s+", " ", value).strip()[:80].strip()


def check_columns(export: ExportRows, mapping: dict[str, list[str]]) -> None:
    """A mapped column that the export repeats is ambiguous: name which copy to use. A CSV column
    that is not there usually means a wrong delimiter: say which one was used."""
    for columns in mapping.values():
        for column in columns:
            if export.header and column not in export.header and column not in export.format.duplicate_headers:
                delimiter = repr(export.format.delimiter)
                raise ConfigError(
                    f"{export.path}: no column {column}; columns are: {', '.join(export.header)} "
                    f"(read with delimiter {delimiter} and {export.format.encoding}; set --delimiter or --encoding)"
                )
            count = export.format.duplicate_headers.get(column)
            if count:
                copies = ", ".join(f"{column}#{i}" for i in range(1, count + 1))
                raise ConfigError(
                    f"{export.path}: the column '{column}' appears {count} times; map one of {copies} "
                    f"(or several joined with +)"
                )


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


def mapped_labels(mapping: dict[str, list[str]]) -> list[LabelField]:
    """The label fields an export maps, in answer order."""
    return [field for field in LABEL_FIELDS if field in mapping]


def stratify_field(mapping: dict[str, list[str]]) -> str | None:
    """The label the split is stratified by: the category if mapped, else the first label mapped."""
    labels = mapped_labels(mapping)
    return labels[0] if labels else None


def import_export(
    path: Path,
    mapping: dict[str, list[str]],
    taxonomy: Taxonomy | None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    encoding: str | None = None,
    delimiter: str | None = None,
) -> tuple[dict[str, list[dict[str, str]]], ImportReport]:
    export = open_export(path, encoding, delimiter)
    check_columns(export, mapping)
    labels = mapped_labels(mapping)
    if taxonomy is not None:
        undefined = [f for f in labels if f not in taxonomy.fields]
        if undefined:
            raise ConfigError(
                f"--map labels {', '.join(undefined)}, which the taxonomy '{taxonomy.name}' does not define; "
                "add them to it, drop them from --map, or use --derive-taxonomy"
            )
    split_by = stratify_field(mapping)
    report = ImportReport(format=export.format, stratified_by=split_by)
    seen: dict[str, tuple[str, ...]] = {}  # exact or near text key -> the labels of its first row
    missing: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    unknown_values: dict[str, Counter[str]] = defaultdict(Counter)
    duplicates_by_label: Counter[str] = Counter()
    kept: list[dict[str, str]] = []
    for row in track(export.rows(), "import"):
        report.rows += 1
        record = map_row(row, mapping, path)
        record["text"] = clean_text(record["text"])
        if not record["text"]:
            report.missing_text += 1
            continue
        unlabelled = [f for f in labels if not record.get(f)]
        if unlabelled:
            missing.update(unlabelled)
            continue
        bad = [f for f in labels if taxonomy is not None and not _known(taxonomy, f, record)]
        if bad:
            unknown.update(bad)
            for field in bad:
                unknown_values[field][record[field]] += 1
            continue
        label_key = tuple(record[f] for f in labels)
        exact = "exact:" + hashlib.sha1(record["text"].encode()).hexdigest()
        near = "near:" + near_key(record["text"])
        duplicate_of = seen.get(exact, seen.get(near))
        if duplicate_of == label_key:
            if exact in seen:
                report.exact_duplicates += 1
            else:
                report.near_duplicates += 1
            duplicates_by_label[record.get(split_by or "", "")] += 1
            continue
        if duplicate_of is not None:
            report.label_conflicts += 1  # the same text, labelled otherwise: both stay, a human decides
        seen.setdefault(exact, label_key)
        seen.setdefault(near, label_key)
        record.setdefault("id", f"row-{report.rows}")
        kept.append(record)
    report.missing_labels = dict(missing)
    report.unknown_labels = dict(unknown)
    report.unknown_values = {f: dict(c.most_common(SHOWN_VALUES)) for f, c in unknown_values.items()}
    report.duplicates_by_label = dict(duplicates_by_label) if split_by else {}
    report.kept = len(kept)
    splits = stratified_split(kept, seed, fractions, split_by)
    report.splits = {name: len(rows) for name, rows in splits.items()}
    return splits, report


def nothing_kept_reason(report: ImportReport) -> str:
    """One line on why an import kept no row, naming the values it did not know."""
    causes = []
    if report.missing_text:
        causes.append(f"{report.missing_text} without text")
    for field, count in report.missing_labels.items():
        causes.append(f"{count} without a {field}")
    for field, count in report.unknown_labels.items():
        values = ", ".join(f"'{v}' x{n}" for v, n in report.unknown_values.get(field, {}).items())
        causes.append(f"{count} with a {field} the taxonomy lacks ({values})")
    return f"kept 0 of {report.rows} rows: " + ("; ".join(causes) or "the export has no rows")


def _known(taxonomy: Taxonomy, field: LabelField, record: dict[str, str]) -> bool:
    if field == "subcategory":
        return record.get("category") in taxonomy.choices("category") and record[field] in taxonomy.choices(
            "subcategory", record["category"]
        )
    return record[field] in taxonomy.choices(field)


def stratified_split(
    rows: list[dict[str, str]], seed: int, fractions: tuple[float, float, float], by: str | None = "category"
) -> dict[str, list[dict[str, str]]]:
    rng = random.Random(seed)
    by_label: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row.get(by, "") if by else ""].append(row)
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


def derive_taxonomy(
    path: Path,
    mapping: dict[str, list[str]],
    name: str,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> dict[str, Any]:
    """A taxonomy (as YAML-ready data) with the label fields the export maps, and no others: every
    label seen, most frequent first (categories and their subcategories sorted by name)."""
    labels = mapped_labels(mapping)
    if not labels:
        raise ConfigError(
            f"--map names no label column; map at least one of {', '.join(LABEL_FIELDS)} "
            '(e.g. assignment_group="Assignment group")'
        )
    if "subcategory" in labels and "category" not in labels:
        raise ConfigError("--map: a subcategory needs its category; map category=COLUMN as well")
    export = open_export(path, encoding, delimiter)
    check_columns(export, mapping)
    subcategories: dict[str, set[str]] = defaultdict(set)
    others: dict[LabelField, Counter[str]] = defaultdict(Counter)
    for row in export.rows():
        record = map_row(row, mapping, path)
        if not clean_text(record["text"]) or any(not record.get(f) for f in labels):
            continue  # rows the import rejects bring no labels
        if "category" in labels:
            subcategories[record["category"]]
            if "subcategory" in labels:
                subcategories[record["category"]].add(record["subcategory"])
        for field in labels:
            if field not in ("category", "subcategory"):
                others[field][record[field]] += 1
    if not subcategories and not others:
        raise ConfigError(f"{path}: no row has text and every mapped label ({', '.join(labels)}); check --map")
    data: dict[str, Any] = {"name": name}
    if subcategories:
        data["categories"] = [
            {"name": c, "subcategories": sorted(s)} if s else {"name": c} for c, s in sorted(subcategories.items())
        ]
    for field, counts in others.items():
        data[LABEL_SET_KEYS[field]] = [label for label, _ in counts.most_common()]
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
