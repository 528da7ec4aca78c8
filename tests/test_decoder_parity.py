"""The decoder's summary against plain greedy decoding under llama.cpp's grammar sampler, token by
token. With n_ubatch 1, llama.cpp computes one token per pass, so how tokens are batched cannot
move a logit (it does otherwise: see bench/NOTES.md) and any difference is the decoder's own."""

from collections.abc import Iterator

import numpy as np
import pytest

from ticketsmith.runtime.answer_format import key_prefix
from ticketsmith.runtime.decoder import DecodeStats
from ticketsmith.runtime.grammar_check import GrammarState
from ticketsmith.runtime.schema import SUMMARY_MAX_CHARS
from ticketsmith.runtime.settings import RuntimeSettings
from ticketsmith.runtime.triager import Triager

TICKETS = [
    "Outlook crashes when opening attachments",
    "VPN keeps disconnecting every ten minutes since the update, I cannot work from home",
    "printer on floor 2 jams, error E-302, paper tray 3, urgent, whole finance team waiting",
]


@pytest.fixture(scope="module")
def unbatched(settings: RuntimeSettings) -> Iterator[Triager]:
    loaded = Triager(
        settings.model_copy(
            update={"n_ubatch": 1, "max_summary_tokens": 256, "summary_one_sentence": False, "label_search": "greedy"}
        )
    )
    yield loaded
    loaded.close()


def plain_greedy_summary(triager: Triager, text: str) -> str:
    """The summary that greedy sampling under the grammar writes after the canonical opening."""
    engine, decoder = triager.engine, triager.decoder
    opening = engine.tokenize(key_prefix(0))
    prompt, _, _ = triager.prompt_tokens(text)
    decoder.reset()
    logits = decoder.feed_prompt(prompt + opening, triager.fixed_prefix_length, DecodeStats())
    state = GrammarState(engine, triager.grammar)
    vocabulary = np.arange(engine.n_vocab, dtype=np.intc)
    summary = b""
    try:
        for token in opening:
            state.accept(token)
        while True:
            token = int(np.argmax(np.where(state.allowed_mask(vocabulary), logits, -np.inf)))
            head, quote, _ = engine.token_bytes(token).partition(b'"')
            if quote:  # the token closes the summary, perhaps after a few characters of it
                return (summary + head).decode("utf-8").strip()
            state.accept(token)
            summary += head
            logits = decoder.append([token], DecodeStats())
    finally:
        state.close()


@pytest.mark.parametrize("text", TICKETS)
def test_summary_is_plain_greedy_decoding_under_the_grammar(unbatched: Triager, text: str) -> None:
    _, ticket, _, _ = unbatched.decode(text)
    assert ticket.summary.strip() == plain_greedy_summary(unbatched, text)


def test_the_character_bound_is_reached_as_the_grammar_allows(unbatched: Triager) -> None:
    """This untrained model rambles: its unbounded summaries run into the grammar's 200 characters."""
    lengths = [len(unbatched.decode(text)[1].summary) for text in TICKETS]
    assert max(lengths) >= SUMMARY_MAX_CHARS - 3
