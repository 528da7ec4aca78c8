"""Make any ticket text safe to tokenize: valid Unicode, no control characters, bounded size."""

import re
import unicodedata

from inscriptis import get_text

from ticketsmith.runtime.errors import TicketError

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")


TAIL_SHARE = 4  # a cut ticket keeps its last quarter: where a mail says what it wants, or its error


def keep_ends(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars` characters, keeping its start and its end: a long mail opens
    with the problem and often closes with the request or the error that matters."""
    if len(text) <= max_chars:
        return text
    tail = max_chars // TAIL_SHARE
    head = max_chars - tail - 1
    return text[:head] + "\n" + (text[len(text) - tail :] if tail else "")


def clean_ticket_text(text: str, max_chars: int) -> tuple[str, bool]:
    """Normalise `text` and cut it to `max_chars` (start and end kept); returns (text, was_cut).
    Empty text is an error."""
    text = text.encode("utf-8", errors="replace").decode("utf-8")  # lone surrogates become '?'
    was_cut = len(text) > max_chars
    text = keep_ends(text, max_chars)
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub(" ", text)
    text = _BLANK_LINES.sub("\n\n", _SPACES.sub(" ", text)).strip()
    if not text:
        raise TicketError("the ticket text is empty (or only whitespace and control characters)")
    return text, was_cut


def strip_html(text: str) -> str:
    """HTML (mail bodies of Zoho Desk and ServiceDesk Plus, HTML exports) as plain text, by inscriptis,
    a maintained converter: it drops <style> and <script>, whose contents (Outlook's
    `p.MsoNormal{margin:0cm;...}`) would otherwise land in tickets and training data, and keeps the
    line structure of paragraphs, breaks and lists."""
    if "<" not in text:
        return text
    return str(get_text(text))
