"""Plain greedy decoding without the decoder's shortcuts: one token per forward pass, each the most
likely token the grammar allows, from a cold cache unless told otherwise. The yardsticks of
`bench.parity` and of tests/test_decoder_parity.py.

Two grammars are walked. `plain_greedy` follows llama.cpp's GBNF sampler alone, which works on
characters: it may spell a key or a label in any tokens that make up its text (`M`,`obil`,`e`).
`canonical_greedy` follows the token-level grammar the decoder and training share: the summary's
tokens are still the sampler's choice, but the scaffolding and the labels are spelled in their
canonical tokens (the label tries), so that a forced token is the only one allowed and a greedy
sampler must take it. Against the latter, any difference is one of the decoder's shortcuts (forced
tokens batched, the prefix cache, trie batches) or of llama.cpp's arithmetic."""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from ticketsmith.runtime.answer_format import FULL_LAYOUT
from ticketsmith.runtime.decoder import DecodeStats
from ticketsmith.runtime.engine import LlamaEngine
from ticketsmith.runtime.grammar_check import GrammarState
from ticketsmith.runtime.triager import Triager

MAX_ANSWER_TOKENS = 512
TOP_CANDIDATES = 64  # checked against the grammar first; the whole vocabulary only when too few pass
FORCED = float("inf")  # the lead of a token that is the only one allowed


@dataclass
class GreedyRun:
    values: dict[str, Any]  # empty when the answer is not a JSON object
    tokens: list[int]
    margins: list[float]  # per step: the chosen token's logit minus the best other allowed one


def best_allowed(
    state: GrammarState, logits: npt.NDArray[np.float32], refuse: Callable[[int], bool] | None = None
) -> tuple[int, float]:
    """The allowed token with the highest logit, and its lead over the next allowed one; `refuse`
    takes tokens out that the grammar would allow."""
    order = np.argsort(-logits).astype(np.intc)
    for candidates in (order[:TOP_CANDIDATES], order):
        allowed = candidates[state.allowed_mask(candidates)]
        if refuse is not None:
            allowed = np.array([t for t in allowed if not refuse(int(t))], dtype=np.intc)
        if len(allowed) >= 2 or len(candidates) == len(order):
            break
    lead = float(logits[allowed[0]] - logits[allowed[1]]) if len(allowed) > 1 else FORCED
    return int(allowed[0]), lead


class _Walk:
    """A run over one ticket's prompt that evaluates each answer token in a pass of its own, checking
    every token against llama.cpp's grammar sampler. `cold`: the fixed prefix is evaluated anew too
    (else its KV cache is reused, as the decoder reuses it)."""

    def __init__(self, triager: Triager, text: str, ticket_token_by_token: bool, cold: bool) -> None:
        self.decoder, self.engine = triager.decoder, triager.engine
        prompt = triager.encode_ticket(text).tokens
        fixed = triager.fixed_prefix_length
        self.stats = DecodeStats()
        if cold:
            self.decoder.reset()
        if ticket_token_by_token:
            self.logits = self.decoder.feed_prompt(prompt[: fixed + 1], fixed, self.stats)
            for token in prompt[fixed + 1 :]:
                self.logits = self.decoder.append([token], self.stats)
        else:
            self.logits = self.decoder.feed_prompt(prompt, fixed, self.stats)
        self.state = GrammarState(self.engine, triager.grammar)
        self.tokens: list[int] = []
        self.margins: list[float] = []

    def take(self, token: int, margin: float = FORCED) -> None:
        if not self.state.allows(token):
            raise AssertionError(f"the grammar refuses token {token} ({self.engine.token_bytes(token)!r})")
        self.state.accept(token)
        self.tokens.append(token)
        self.margins.append(margin)
        self.logits = self.decoder.append([token], self.stats)

    def text(self) -> bytes:
        return b"".join(self.engine.token_bytes(t) for t in self.tokens)

    def close(self) -> None:
        self.state.close()


def _before_closing_quote(summary: bytes, piece: bytes) -> bytes | None:
    """What `piece` writes before the quote that closes the string, or None if it does not close it:
    a quote closes it where an even number of backslashes precede it."""
    for index in (i for i, byte in enumerate(piece) if byte == ord('"')):
        written = summary + piece[:index]
        if (len(written) - len(written.rstrip(b"\\"))) % 2 == 0:
            return piece[:index]
    return None


def _shows_a_character(piece: bytes) -> bool:
    """Whether `piece` writes a character that is not whitespace, outside any JSON escape."""
    plain = re.sub(rb"\\(u[0-9a-fA-F]{0,4}|.?)", b"", piece)
    return bool(plain.decode("utf-8", errors="ignore").strip())


def _refused_in_summary(engine: LlamaEngine, summary: bytes, token: int) -> bool:
    """The token-level grammar's rules on top of the GBNF: no control tokens (the GBNF reads them as
    their text); a first token that shows a character and does not close the string (so that a
    summary is never blank); and no token that closes the string right after finishing a split
    character (what it writes before the quote has no tokens of its own)."""
    piece = engine.token_bytes(token)
    head = _before_closing_quote(summary, piece)
    if engine.is_control(token) or (not summary and (head is not None or not _shows_a_character(piece))):
        return True
    if head is None:
        return False
    try:
        head.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def plain_greedy(triager: Triager, text: str, *, ticket_token_by_token: bool = False, cold: bool = True) -> GreedyRun:
    """Greedy decoding under llama.cpp's GBNF sampler alone, to the end of generation."""
    walk = _Walk(triager, text, ticket_token_by_token, cold)
    try:
        while len(walk.tokens) < MAX_ANSWER_TOKENS:
            token, margin = best_allowed(walk.state, walk.logits)
            if walk.engine.is_end_of_generation(token):
                break
            walk.take(token, margin)
        try:
            values = json.loads(walk.text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            values = {}
        return GreedyRun(values if isinstance(values, dict) else {}, walk.tokens, walk.margins)
    finally:
        walk.close()


def canonical_greedy(
    triager: Triager, text: str, *, ticket_token_by_token: bool = False, cold: bool = True
) -> GreedyRun:
    """Greedy decoding under the token-level grammar: the summary as llama.cpp's sampler allows it
    (over the whole vocabulary, no token or sentence bound; the few extra rules of
    `_refused_in_summary`), ended by the first token that closes the
    string, whose characters before the quote join the summary; then the canonical tokens of the
    scaffolding, and each label field as a greedy walk down its label trie. Every token is checked
    against the GBNF as well, and the answer must be complete under it."""
    walk = _Walk(triager, text, ticket_token_by_token, cold)
    engine = walk.engine
    try:
        for token in engine.tokenize(FULL_LAYOUT.key_prefix(0)):
            walk.take(token)
        summary = b""
        while True:
            token, margin = best_allowed(walk.state, walk.logits, partial(_refused_in_summary, engine, summary))
            head = _before_closing_quote(summary, engine.token_bytes(token))
            if head is not None:  # the canonical tokens of what it spells follow instead of it
                summary += head
                tail = head.decode("utf-8")
                for forced in (engine.tokenize(tail) if tail else []) + engine.tokenize(FULL_LAYOUT.key_prefix(1)):
                    walk.take(forced, margin)
                    margin = FORCED
                break
            walk.take(token, margin)
            summary += engine.token_bytes(token)
        values: dict[str, Any] = {"summary": json.loads(b'"' + summary + b'"')}  # as the answer reads
        for name in FULL_LAYOUT.fields[1:]:
            trie = walk.decoder.label_trie(name, values.get("category"))
            node = trie.root
            while node.children:
                ranked = sorted(node.children.values(), key=lambda child: -walk.logits[child.token])
                lead = float(walk.logits[ranked[0].token] - walk.logits[ranked[1].token]) if len(ranked) > 1 else FORCED
                node = ranked[0]
                walk.take(node.token, lead)
            values[name] = trie.labels[node.labels[0]]
        if not walk.state.is_complete():
            raise AssertionError(f"the grammar does not accept the whole answer {walk.text()!r}")
        return GreedyRun(values, walk.tokens, walk.margins)
    finally:
        walk.close()
