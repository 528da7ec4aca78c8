"""Read the rows of an ITSM export (CSV or JSONL) as they come out of real systems.

CSV exports from European systems often use `;` or tabs and Windows-1252, mails make fields far
larger than Python's csv default of 131,072 characters, and Jira repeats headers (`Component/s`).
The encoding is UTF-8 when the whole file decodes as UTF-8 (a BOM is dropped) and Windows-1252
otherwise; the delimiter is sniffed from the first lines. Both can be overridden. Every failure is a
ConfigError naming the file and the line."""

import codecs
import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ticketsmith.runtime.errors import ConfigError

DELIMITERS = ",;\t|"
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "semicolon": ";", "comma": ",", "pipe": "|"}
MAX_FIELD_CHARS = 16 * 1024 * 1024  # a mail with inline attachments; beyond this a field is refused
JSON_SUFFIXES = {".jsonl", ".json", ".ndjson"}


class ExportFormat(BaseModel):
    """How an export was read: what the report shows, so a wrong guess is visible."""

    kind: str
    encoding: str
    delimiter: str | None = None
    duplicate_headers: dict[str, int] = {}


@dataclass(frozen=True)
class ExportRows:
    """An export's format and, lazily, its rows (column name -> value)."""

    path: Path
    format: ExportFormat
    text: str
    header: tuple[str, ...] = ()  # a CSV's column names, repeated ones numbered (see unique_headers)

    def rows(self) -> Iterator[dict[str, Any]]:
        if self.format.kind == "jsonl":
            yield from _json_rows(self.path, self.text)
        else:
            assert self.format.delimiter is not None
            yield from _csv_rows(self.path, self.text, self.format.delimiter)


def decode_export(raw: bytes, encoding: str | None) -> tuple[str, str]:
    """The text and the encoding used: the override, else UTF-8 if it decodes, else Windows-1252."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(f"--encoding {encoding}: unknown encoding (try utf-8 or cp1252)") from None
        return raw.decode(encoding, errors="replace"), encoding
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), "cp1252"


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header line into the most columns. Only the header is used:
    bodies hold mails full of commas and semicolons, headers hold column names."""
    header = text.split("\n", 1)[0]
    widths = {d: len(next(csv.reader([header], delimiter=d), [])) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: widths[d])  # ties keep the earlier, the comma first
    return best if widths[best] > 1 else ","


def open_export(path: Path, encoding: str | None = None, delimiter: str | None = None) -> ExportRows:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    raw = path.read_bytes()
    if b"\x00" in raw[:65536] and not raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(f"{path}: a binary file, not a CSV or JSONL export")
    text, used = decode_export(raw, encoding)
    if path.suffix.lower() in JSON_SUFFIXES:
        return ExportRows(path=path, format=ExportFormat(kind="jsonl", encoding=used), text=text)
    chosen = DELIMITER_NAMES.get(delimiter, delimiter) if delimiter is not None else sniff_delimiter(text)
    if len(chosen) != 1:
        raise ConfigError(f"--delimiter {delimiter!r}: give one character, or tab, semicolon, comma or pipe")
    header = next(csv.reader(io.StringIO(text), delimiter=chosen), [])
    repeated = {name: n for name, n in Counter(header).items() if n > 1}
    export_format = ExportFormat(kind="csv", encoding=used, delimiter=chosen, duplicate_headers=repeated)
    return ExportRows(path=path, format=export_format, text=text, header=tuple(unique_headers(header)))


def _json_rows(path: Path, text: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, strict=False)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: line {number} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: line {number} is not a JSON object")
        yield row


def unique_headers(header: list[str]) -> list[str]:
    """Repeated headers become `Name#1`, `Name#2`, ... so that no column silently replaces another."""
    repeated = {name for name, n in Counter(header).items() if n > 1}
    seen: Counter[str] = Counter()
    names = []
    for name in header:
        seen[name] += 1
        names.append(f"{name}#{seen[name]}" if name in repeated else name)
    return names


def _csv_rows(path: Path, text: str, delimiter: str) -> Iterator[dict[str, Any]]:
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = unique_headers(next(reader, []))
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            yield dict(zip(header, row + [""] * (len(header) - len(row)), strict=False))
    except csv.Error as exc:
        limit = f" (fields may hold up to {MAX_FIELD_CHARS:,} characters)" if "field larger" in str(exc) else ""
        raise ConfigError(f"{path}: line {reader.line_num} cannot be read as CSV: {exc}{limit}") from None
