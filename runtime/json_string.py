"""The summary's JSON string as the grammar reads it, one token at a time.

Mirrors SUMMARY_RULES (runtime/grammar.py): JSON escapes (`\\\\`, `\\"`, `\\n`, `\\u` and four hex
digits, never a surrogate half), no raw control characters, and a character bound in which an escape
counts once. A character may be split across tokens, as byte-level vocabularies split CJK and emoji;
the bytes must be strict UTF-8. A token that ends inside an escape or a character leaves a state that
the next token must continue."""

import codecs
import re
from dataclasses import dataclass

_HEX = frozenset("0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = frozenset('"\\/bfnrt')
_SURROGATE_LEADS = frozenset("dD")
_SPECIAL = re.compile(r'["\\\x00-\x1f]')  # what a plain run of characters cannot contain


@dataclass(frozen=True)
class StringState:
    """Where the string stands between two tokens."""

    escape: str = ""  # the escape written so far ("\\", "\\u", "\\ud", ...); "" outside one
    pending: bytes = b""  # the first bytes of a character that the next token must finish

    @property
    def at_boundary(self) -> bool:
        """Between two characters: the string may close or stop here."""
        return not self.escape and not self.pending


BOUNDARY = StringState()


@dataclass(frozen=True)
class Step:
    """What one token does to the string."""

    state: StringState  # after the token (BOUNDARY if it closes the string)
    chars: int  # characters of the bound the token starts (an escape counts once, at its backslash)
    visible: bool  # it writes a non-whitespace character outside an escape
    closes: bool  # it ends the string with an unescaped quote
    written: str  # the string content the token writes (before the quote, if it closes)
    after: str = ""  # what follows the closing quote inside the token


def _advance_escape(escape: str, char: str) -> str | None:
    """The escape after `char` ("" once complete), or None where the grammar refuses `char`."""
    if escape == "\\":
        if char == "u":
            return "\\u"
        return "" if char in _SIMPLE_ESCAPES else None
    digits = escape[2:]
    if char not in _HEX or (digits in _SURROGATE_LEADS and char not in "01234567"):
        return None
    return "" if len(digits) == 3 else escape + char


def _decode(pending: bytes, piece: bytes) -> tuple[str, bytes] | None:
    """The whole characters of `pending + piece` and the start of a character left over; None for
    bytes that are not UTF-8."""
    if not pending:
        try:
            return piece.decode("utf-8"), b""
        except UnicodeDecodeError:
            pass  # invalid, or a character cut short: the incremental decoder tells which
    decoder = codecs.getincrementaldecoder("utf-8")()
    decoder.setstate((pending, 0))
    try:
        text = decoder.decode(piece)
    except UnicodeDecodeError:
        return None
    left = decoder.getstate()[0]
    if left[:1] == b"\xed" and left[1:2] >= b"\xa0":  # a surrogate half, which Python finds a byte late
        return None
    return text, left


def advance(state: StringState, piece: bytes) -> Step | None:
    """The token `piece` after `state`, or None where the grammar refuses it."""
    decoded = _decode(state.pending, piece) if piece else None
    if decoded is None:
        return None
    text, pending = decoded
    if not state.escape and not _SPECIAL.search(text):  # the common case: plain characters
        started = len(text) + bool(pending) - bool(state.pending)
        return Step(StringState("", pending), started, not text.isspace() and bool(text), False, text)
    escape = state.escape
    # a character counts where it begins: one begun here and left pending counts, one finished here not
    chars_started = int(bool(pending)) - int(bool(state.pending))
    visible = False
    for index, char in enumerate(text):
        if escape:
            next_escape = _advance_escape(escape, char)
            if next_escape is None:
                return None
            escape = next_escape
        elif char == '"':
            if state.pending or pending:  # the quote must close the string between whole characters
                return None
            return Step(BOUNDARY, chars_started, visible, True, text[:index], text[index + 1 :])
        elif char == "\\":
            escape = "\\"
            chars_started += 1
        elif ord(char) < 0x20:
            return None
        else:
            chars_started += 1
            visible = visible or not char.isspace()
    if pending and escape:
        return None
    return Step(StringState(escape, pending), chars_started, visible, False, text)
