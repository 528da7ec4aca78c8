"""The summary's string automaton: against JSON itself, and against llama.cpp's grammar sampler over
the whole vocabulary in every kind of state (boundary, escape, \\u digits, split character, bound)."""

import itertools
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketsmith.runtime.answer_format import FULL_LAYOUT
from ticketsmith.runtime.grammar_check import GrammarState
from ticketsmith.runtime.json_string import BOUNDARY, StringState, advance
from ticketsmith.runtime.schema import SUMMARY_MAX_CHARS
from ticketsmith.runtime.triager import Triager

no_surrogates = st.characters(codec="utf-8")  # every character but the surrogate halves


def walk(chunks: list[bytes]) -> tuple[StringState, int, str] | None:
    """Advance through `chunks`; the end state, the characters counted and the content written."""
    state, chars, written = BOUNDARY, 0, ""
    for chunk in chunks:
        taken = advance(state, chunk)
        if taken is None or taken.closes:
            return None
        state, chars, written = taken.state, chars + taken.chars, written + taken.written
    return state, chars, written


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@given(st.text(no_surrogates, min_size=1, max_size=40), st.lists(st.integers(min_value=0), max_size=12))
def test_any_json_string_is_accepted_however_it_is_cut(value: str, cuts: list[int]) -> None:
    """JSON-escaped text cut into arbitrary byte pieces (characters split across them) is accepted,
    ends between characters and counts each character once, an escape as one."""
    content = json.dumps(value, ensure_ascii=False)[1:-1]
    end = walk(split(content.encode(), cuts))
    assert end is not None
    state, chars, written = end
    assert state.at_boundary and chars == len(value) and written == content


PIECES = [b"a", b"\\", b'"', b"u", b"d", b"8", b"0", b"n", b"\xc3", b"\xa9", b"\x01"]


@given(st.lists(st.sampled_from(PIECES), max_size=8))
def test_accepted_exactly_when_json_reads_it_without_surrogates(pieces: list[bytes]) -> None:
    """Byte pieces are a whole string content exactly when JSON parses them (strict: no raw control
    characters) and they escape no surrogate half, which the grammar refuses."""
    data = b"".join(pieces)
    end = walk(pieces)
    try:
        value = json.loads(b'"' + data + b'"')
        expected = not any(0xD800 <= ord(char) <= 0xDFFF for char in value)
    except (json.JSONDecodeError, UnicodeDecodeError):
        expected = False
    assert (end is not None and end[0].at_boundary) == expected


def test_a_closing_quote_ends_the_string_only_outside_an_escape() -> None:
    escaped = advance(StringState("\\"), b'","')
    assert escaped is not None and escaped.closes and escaped.written == '",' and escaped.after == ""
    plain = advance(BOUNDARY, b'.",')
    assert plain is not None and plain.closes and plain.written == "." and plain.after == ","
    assert advance(StringState("\\u0"), b'"') is None
    assert advance(StringState(pending=b"\xc3"), b'\xa9"') is None  # not between whole characters


def test_bytes_that_are_not_utf8_are_refused() -> None:
    """Stricter than llama.cpp's sampler, which lets overlong and surrogate encodings through: a
    summary with them would not decode."""
    assert advance(StringState(pending=b"\xe0"), b"\x80") is None  # overlong
    assert advance(StringState(pending=b"\xed"), b"\xa0") is None  # a surrogate half
    assert advance(BOUNDARY, b"\xa9") is None  # a continuation byte with nothing to continue
    assert advance(BOUNDARY, b"\xff") is None


@pytest.fixture(scope="module")
def walks(triager: Triager) -> list[tuple[str, list[int]]]:
    """Token paths into the summary that end in each kind of state."""
    tokenize = triager.engine.tokenize
    vocab = [triager.engine.token_bytes(t) for t in range(triager.engine.n_vocab)]

    def token(piece: bytes) -> int:
        return vocab.index(piece)

    # a 3-byte lead that any continuation byte may follow (not E0 or ED: see the test below)
    lead = next(t for t, p in enumerate(vocab) if len(p) == 1 and 0xE1 <= p[0] <= 0xEC)
    second = next(t for t, p in enumerate(vocab) if len(p) == 1 and 0x80 <= p[0] < 0xC0)
    filler = tokenize("x" * (SUMMARY_MAX_CHARS - 1))
    return [
        ("start", []),
        ("boundary", tokenize("Disk full on")),
        ("after a backslash", [*tokenize("path "), token(b"\\")]),
        ("after \\u", [*tokenize("a "), token(b"\\"), token(b"u")]),
        ("after \\ud", [*tokenize("a "), token(b"\\"), token(b"u"), token(b"d")]),
        ("after \\u00", [*tokenize("a "), token(b"\\"), token(b"u"), token(b"0"), token(b"0")]),
        ("a character's first byte", [*tokenize("a "), lead]),
        ("a character's first two bytes", [*tokenize("a "), lead, second]),
        ("one character left", filler),
        ("near the bound, after a backslash", [*filler[:-1], token(b"\\")]),
        ("no character left", filler + tokenize("x")),
    ]


def test_the_automaton_allows_what_llama_cpp_allows_over_the_whole_vocabulary(
    triager: Triager, walks: list[tuple[str, list[int]]]
) -> None:
    """For every token of the vocabulary, in every kind of state: the automaton allows it exactly
    when llama.cpp's grammar sampler does (the closing tokens: those that go on as the scaffolding)."""
    engine = triager.engine
    vocab = np.arange(engine.n_vocab, dtype=np.intc)
    pieces = [engine.token_bytes(t) for t in range(engine.n_vocab)]
    special = [not p or engine.is_control(t) or engine.is_end_of_generation(t) for t, p in enumerate(pieces)]
    closing = FULL_LAYOUT.key_prefix(1)
    for name, path in walks:
        grammar = GrammarState(engine, triager.grammar)
        try:
            for token in engine.tokenize(FULL_LAYOUT.key_prefix(0)) + path:
                assert grammar.allows(token), name
                grammar.accept(token)
            end = walk([pieces[t] for t in path])
            assert end is not None, name
            state, chars, _ = end
            gbnf = grammar.allowed_mask(vocab)
        finally:
            grammar.close()
        ours = np.zeros(engine.n_vocab, dtype=bool)
        for token, piece in enumerate(pieces):
            taken = None if special[token] else advance(state, piece)
            ours[token] = (
                taken is not None
                and taken.chars <= SUMMARY_MAX_CHARS - chars
                and (not taken.closes or (chars + taken.chars >= 1 and closing.startswith('"' + taken.after)))
            )
        differ = [(int(t), pieces[t]) for t in np.flatnonzero(ours != gbnf) if not special[t]]
        assert not differ, f"{name}: {len(differ)} tokens differ, e.g. {differ[:8]}"
        assert ours.any(), name
