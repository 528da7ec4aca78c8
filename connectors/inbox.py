"""The inbox folder: drop a ticket file in `inbox/`, get a result JSON in `outbox/`; the original
moves to `processed/`, or to `failed/` with a `.error.txt` beside it.

Accepted: `.txt`, `.json` (with a string `text` field), `.eml` (subject and body). Files still being
written are left alone until their modification time is `settle_s` old; names starting with `.` or
ending in `.part`, `.tmp` or `~` are never picked up (write there, then rename). Symlinks, folders,
binary content and other extensions go to `failed/`. Files above `max_bytes` are read up to that
size. Names are only used inside these folders and never as paths elsewhere."""

import email
import email.policy
import hashlib
import json
import os
import time
from pathlib import Path

from pydantic import BaseModel

from ticketsmith.runtime.errors import TicketError
from ticketsmith.runtime.text_hygiene import strip_html

SUPPORTED_SUFFIXES = {".txt", ".json", ".eml"}
IGNORED_SUFFIXES = (".part", ".tmp", "~")
BINARY_CONTROL_SHARE = 0.1


class InboxFile(BaseModel):
    name: str
    text: str
    sha256: str
    cut: bool


class InboxFolders:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.inbox, self.outbox = root / "inbox", root / "outbox"
        self.processed, self.failed = root / "processed", root / "failed"
        for folder in (self.inbox, self.outbox, self.processed, self.failed):
            folder.mkdir(parents=True, exist_ok=True)

    def ready(self, settle_s: float) -> list[Path]:
        """Entries of inbox/ that are due: not hidden or temporary, untouched for `settle_s`."""
        now = time.time()
        out = []
        for entry in sorted(self.inbox.iterdir()):
            if entry.name.startswith(".") or entry.name.endswith(IGNORED_SUFFIXES):
                continue
            if now - entry.lstat().st_mtime >= settle_s:
                out.append(entry)
        return out

    def result_path(self, key: str) -> Path:
        return self.outbox / f"{_safe_stem(key)}.json"

    def write_result(self, key: str, result: dict[str, object]) -> Path:
        """Atomic write (temp file, fsync, rename): a crash never leaves half a result."""
        target = self.result_path(key)
        temporary = target.with_name(f".{target.name}.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(result, handle, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(target)
        return target

    def move(self, entry: Path, to_failed: bool, error: str | None = None) -> Path:
        """Move an original out of inbox/ without overwriting anything already there."""
        folder = self.failed if to_failed else self.processed
        target = folder / entry.name
        counter = 1
        while target.exists() or target.is_symlink():
            target = folder / f"{entry.stem}.{counter}{entry.suffix}"
            counter += 1
        entry.rename(target)
        if error is not None:
            (folder / f"{target.name}.error.txt").write_text(error + "\n", encoding="utf-8")
        return target


def _safe_stem(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._")
    return cleaned[:120] or "ticket"


_TEXT_CONTROLS = {9, 10, 11, 12, 13, 27}


def _decode(data: bytes) -> str:
    """Text from bytes: UTF-8, else Windows-1252 (older mail clients); binary data is refused."""
    sample = data[:8192]
    controls = sum(1 for b in sample if b < 32 and b not in _TEXT_CONTROLS)
    if 0 in sample or controls > BINARY_CONTROL_SHARE * max(1, len(sample)):
        raise TicketError("the file looks binary, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def read_inbox_file(entry: Path, max_bytes: int) -> InboxFile:
    """The ticket text of one inbox entry; TicketError says why a file cannot be a ticket."""
    if entry.is_symlink():
        raise TicketError("symbolic links are not followed")
    if not entry.is_file():
        raise TicketError("not a regular file")
    suffix = entry.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise TicketError(f"unsupported file type '{suffix}'; use {', '.join(sorted(SUPPORTED_SUFFIXES))}")
    with entry.open("rb") as handle:
        data = handle.read(max_bytes + 1)
    cut = len(data) > max_bytes
    data = data[:max_bytes]
    digest = hashlib.sha256(data).hexdigest()
    if suffix == ".json":
        try:
            parsed = json.loads(_decode(data), strict=False)
        except json.JSONDecodeError as exc:
            raise TicketError(f"not valid JSON ({exc.msg})") from None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("text"), str):
            raise TicketError('a .json ticket needs a string "text" field')
        text = parsed["text"]
    elif suffix == ".eml":
        message = email.message_from_bytes(data, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain", "html"))
        content = body.get_content() if body is not None else ""
        if body is not None and body.get_content_type() == "text/html":
            content = strip_html(content)
        text = f"{message.get('subject', '')}\n{content.strip()}"
    else:
        text = _decode(data)
    if not text.strip():
        raise TicketError("the file has no ticket text")
    return InboxFile(name=entry.name, text=text, sha256=digest, cut=cut)
