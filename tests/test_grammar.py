"""The grammar: generated deterministically, checked in, compiled by llama.cpp, and sound: every
string llama.cpp's grammar engine accepts is JSON that validates against the schema."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ticketsmith.runtime.answer_format import FULL_LAYOUT
from ticketsmith.runtime.engine import LlamaEngine
from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.grammar import compile_grammar
from ticketsmith.runtime.grammar_check import GrammarState, grammar_accepts
from ticketsmith.runtime.schema import SUMMARY_MAX_CHARS, Ticket, result_json_schema
from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.runtime.triager import Triager

REPO = Path(__file__).resolve().parent.parent
SLOW = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def test_checked_in_grammar_matches_compiler(taxonomy: Taxonomy) -> None:
    checked_in = (REPO / "grammars" / "ticket.gbnf").read_text(encoding="utf-8")
    assert checked_in == compile_grammar(taxonomy), "run `ticketsmith grammar --out grammars/ticket.gbnf`"


def test_llama_cpp_rejects_a_broken_grammar(triager: Triager) -> None:
    with pytest.raises(ConfigError, match="cannot compile"):
        GrammarState(triager.engine, "root ::= undefined-rule")


@pytest.fixture(scope="module")
def walk_tokens(triager: Triager, taxonomy: Taxonomy) -> np.ndarray:
    """Candidate tokens for random walks: every ASCII token, the tokens of the scaffolding and labels,
    and a spread of the vocabulary (multi-byte characters, digits, punctuation...). Only tokens that
    are whole UTF-8 characters, as the decoder emits: llama.cpp's grammar engine decodes UTF-8
    leniently (an overlong byte sequence reads as the character it encodes), which no GBNF can rule
    out, so the runtime also parses every answer's bytes strictly (test_triage)."""
    engine = triager.engine
    tokens = {t for t in range(engine.n_vocab) if len(engine.token_bytes(t)) == 1}
    tokens |= set(engine.tokenize(compile_grammar(taxonomy)))
    tokens |= set(range(0, engine.n_vocab, 37))
    for text in ('\\u00e9\\n\\t\\"', "Grüße 中文 ñ", "\\uD7FF\\ud800"):
        tokens |= set(engine.tokenize(text))
    return np.array(sorted(t for t in tokens if whole_characters(engine.token_bytes(t))), dtype=np.intc)


def whole_characters(piece: bytes) -> bool:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(piece)


def random_walk(engine: LlamaEngine, grammar: str, candidates: np.ndarray, data: st.DataObject) -> list[int]:
    state = GrammarState(engine, grammar)
    walk: list[int] = []
    try:
        while not state.is_complete():
            allowed = candidates[state.allowed_mask(candidates)]
            assert len(allowed) > 0, "the grammar is stuck: no token can continue"
            token = int(data.draw(st.sampled_from(allowed.tolist())))
            state.accept(token)
            walk.append(token)
            assert len(walk) < 1000
    finally:
        state.close()
    return walk


@SLOW
@given(data=st.data())
def test_every_grammar_sentence_is_a_valid_ticket(
    triager: Triager, taxonomy: Taxonomy, walk_tokens: np.ndarray, data: st.DataObject
) -> None:
    walk = random_walk(triager.engine, triager.grammar, walk_tokens, data)
    text = b"".join(triager.engine.token_bytes(t) for t in walk).decode("utf-8")
    parsed = json.loads(text)
    Ticket.model_validate(parsed, context={"taxonomy": taxonomy})
    assert list(parsed) == [
        "summary",
        "category",
        "subcategory",
        "application",
        "urgency",
        "impact",
        "assignment_group",
    ]
    assert parsed["subcategory"] in taxonomy.choices("subcategory", parsed["category"])
    assert text == json.dumps(parsed, ensure_ascii=False, separators=(",", ":")) or "\\" in text  # compact
    result_schema = result_json_schema(taxonomy)
    answer_schema = {**result_schema, "required": list(parsed)}
    answer_schema["properties"] = {k: result_schema["properties"][k] for k in parsed}
    jsonschema.validate(parsed, answer_schema)


@st.composite
def tickets(draw: st.DrawFn, taxonomy: Taxonomy) -> dict[str, str]:
    category = draw(st.sampled_from(taxonomy.choices("category")))
    return {
        "summary": draw(st.text(min_size=1, max_size=SUMMARY_MAX_CHARS)),
        "category": category,
        "subcategory": draw(st.sampled_from(taxonomy.choices("subcategory", category))),
        "application": draw(st.sampled_from(taxonomy.choices("application"))),
        "urgency": draw(st.sampled_from(taxonomy.choices("urgency"))),
        "impact": draw(st.sampled_from(taxonomy.choices("impact"))),
        "assignment_group": draw(st.sampled_from(taxonomy.choices("assignment_group"))),
    }


@SLOW
@given(data=st.data())
def test_every_valid_ticket_is_a_grammar_sentence(triager: Triager, taxonomy: Taxonomy, data: st.DataObject) -> None:
    values = data.draw(tickets(taxonomy))
    Ticket.model_validate(values, context={"taxonomy": taxonomy})
    text = FULL_LAYOUT.render_answer(values)
    tokens = triager.engine.tokenize(text)
    # a few byte values have no token in SmolLM2's vocabulary: such text cannot reach the grammar
    assume(b"".join(triager.engine.token_bytes(t) for t in tokens) == text.encode())
    assert grammar_accepts(triager.engine, triager.grammar, tokens)


@SLOW
@given(data=st.data())
def test_grammar_rejects_what_the_schema_rejects(triager: Triager, taxonomy: Taxonomy, data: st.DataObject) -> None:
    values = data.draw(tickets(taxonomy))
    foreign = [
        s
        for s in {s.name for c in taxonomy.categories for s in c.subcategories}
        if s not in taxonomy.choices("subcategory", values["category"])
    ]
    mutation = data.draw(
        st.sampled_from(["foreign_subcategory", "unknown_label", "spaced", "long_summary", "empty_summary"])
    )
    if mutation == "foreign_subcategory":
        text = FULL_LAYOUT.render_answer({**values, "subcategory": data.draw(st.sampled_from(foreign))})
    elif mutation == "unknown_label":
        field = data.draw(st.sampled_from(["category", "application", "urgency", "impact", "assignment_group"]))
        text = FULL_LAYOUT.render_answer({**values, field: values[field] + "x"})
    elif mutation == "spaced":
        text = FULL_LAYOUT.render_answer(values).replace('":"', '": "', 1)
    elif mutation == "long_summary":
        text = FULL_LAYOUT.render_answer({**values, "summary": "a" * (SUMMARY_MAX_CHARS + 1)})
    else:
        text = FULL_LAYOUT.render_answer({**values, "summary": ""})
    assert not grammar_accepts(triager.engine, triager.grammar, triager.engine.tokenize(text))


@pytest.mark.parametrize(
    "raw",
    ["a\nb", "a\x01b", "a\\x", "\\ud800", "\\uDFFF"],
    ids=["raw newline", "raw control", "bad escape", "lone surrogate", "lone low surrogate"],
)
def test_grammar_rejects_raw_controls_and_bad_escapes(triager: Triager, taxonomy: Taxonomy, raw: str) -> None:
    values = {
        "summary": "x",
        "category": "Hardware",
        "subcategory": "Laptop",
        "application": "Windows",
        "urgency": "High",
        "impact": "Team",
        "assignment_group": "Desktop Support",
    }
    text = FULL_LAYOUT.render_answer(values).replace('"summary":"x"', f'"summary":"{raw}"')
    assert not grammar_accepts(triager.engine, triager.grammar, triager.engine.tokenize(text))
