"""The decoder against plain greedy decoding under the grammar, token by token (bench.plain_greedy).
With n_ubatch 1, llama.cpp computes one token per pass, so how tokens are batched cannot move a
logit (it does otherwise: see bench/NOTES.md) and any difference is the decoder's own."""

from collections.abc import Iterator

import pytest

from bench.plain_greedy import canonical_greedy
from ticketsmith.runtime.answer_format import FULL_LAYOUT
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


@pytest.mark.parametrize("text", TICKETS)
def test_answer_is_greedy_decoding_under_the_grammar_token_for_token(unbatched: Triager, text: str) -> None:
    """The decoder batches forced tokens and trie nodes and reuses the prefix cache; plain greedy
    decoding (canonical keys and labels, the summary as llama.cpp's grammar sampler allows it) takes
    one token per pass from a cold cache. Same tokens, hence the same answer."""
    unbatched.read_ticket(TICKETS[0])  # a warm prefix cache, as in service
    read = unbatched.read_ticket(text)
    answer, ticket = read.answer, read.ticket
    yardstick = canonical_greedy(unbatched, text)
    assert answer.answer_tokens == yardstick.tokens
    assert ticket.model_dump(include=set(FULL_LAYOUT.fields)) == yardstick.values


def test_a_backslash_is_written_as_the_grammar_allows(unbatched: Triager) -> None:
    """Sample INC-1010: greedy decoding under the grammar copies the UNC path, escaping its
    backslashes (the decoder used to refuse every token with a backslash and wrote something else)."""
    text = (
        "Der Dateiserver \\\\fs01 ist voll, wir können keine Dateien mehr speichern. "
        "Bitte dringend Speicherplatz erweitern."
    )
    read = unbatched.read_ticket(text)
    answer, ticket = read.answer, read.ticket
    assert answer.answer_tokens == canonical_greedy(unbatched, text).tokens
    assert "\\fs01" in ticket.summary  # the model copies one of the two backslashes; the answer escapes it


def test_the_character_bound_is_reached_as_the_grammar_allows(unbatched: Triager) -> None:
    """This untrained model rambles: its unbounded summaries run into the grammar's 200 characters."""
    lengths = [len(unbatched.read_ticket(text).ticket.summary) for text in TICKETS]
    assert max(lengths) >= SUMMARY_MAX_CHARS - 3
