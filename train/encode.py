"""Labelled tickets as training token ids, built with the runtime's own prompt encoder and answer layout.

The prompt comes from `PromptEncoder` (same template, system text, cleaning and truncation as the
runtime) and the answer is tokenized segment by segment as the decoder scores it. The loss covers
the answer tokens only, and within the answer only the fields the data labels: a field missing from
a dataset is filled with its first allowed label so the answer stays well formed, and masked. A
missing summary is the ticket's first line, trained: masking it was measured to be worse (the model
then writes label names into the summary slot; bench/REAL_DATA.md)."""

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from ticketsmith.runtime.answer_format import AnswerLayout
from ticketsmith.runtime.prompt import FULL_PROMPT, TICKET_TOKENS, PromptBuilder, PromptEncoder, Tokenize
from ticketsmith.runtime.schema import SUMMARY_MAX_CHARS
from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.runtime.text_hygiene import clean_ticket_text

IGNORE_INDEX = -100  # the label value PyTorch's cross-entropy skips


class EncodedExample(BaseModel):
    input_ids: list[int]
    labels: list[int]
    truncated: bool


def hf_tokenize(tokenizer: Any) -> Tokenize:
    """A Hugging Face tokenizer behind the runtime's `Tokenize` protocol."""

    def tokenize(text: str, *, add_special: bool = False, parse_special: bool = False) -> list[int]:
        encoded = tokenizer(text, add_special_tokens=add_special, split_special_tokens=not parse_special)
        return list(encoded["input_ids"])

    return tokenize


def fallback_summary(text: str) -> str:
    """For data without summaries: the ticket's first line, cut at a word boundary."""
    cleaned, _ = clean_ticket_text(text, 4 * SUMMARY_MAX_CHARS)
    first = cleaned.split("\n", 1)[0]
    if len(first) <= 80:
        return first
    return first[:80].rsplit(" ", 1)[0]


class TrainingEncoder:
    def __init__(
        self,
        taxonomy: Taxonomy,
        tokenize: Tokenize,
        chat_template: str | None,
        end_of_turn: int,
        max_length: int,
        max_summary_tokens: int,
        prompt_version: str = FULL_PROMPT,
        ticket_tokens: int = TICKET_TOKENS,
    ) -> None:
        self.taxonomy = taxonomy
        self.layout = AnswerLayout.of(taxonomy)
        self.tokenize = tokenize
        self.prompt = PromptEncoder(
            PromptBuilder(taxonomy, chat_template, version=prompt_version).parts(), tokenize, ticket_tokens
        )
        self.end_of_turn = end_of_turn
        self.max_length = max_length
        self.max_summary_tokens = max_summary_tokens

    def answer_values(self, row: Mapping[str, Any]) -> tuple[dict[str, str], set[str]]:
        """The answer's values and the fields that carry a loss (those the row labels)."""
        values: dict[str, str] = {}
        trained: set[str] = {"summary"}
        values["summary"] = str(row.get("summary") or fallback_summary(str(row["text"])))
        for name in self.layout.labels:
            category = values["category"] if name == "subcategory" else None
            choices = self.taxonomy.choices(name, category)
            given = row.get(name)
            if given in choices:
                values[name] = str(given)
                trained.add(name)
            elif given:
                raise ValueError(f"label {given!r} is not a {name} of the taxonomy")
            else:
                values[name] = choices[0]
        return values, trained

    def encode(self, row: Mapping[str, Any]) -> EncodedExample:
        values, trained = self.answer_values(row)
        answer: list[int] = []
        labels: list[int] = []
        segments = self.layout.answer_segments(values)
        owners = ["summary", "summary", "summary", *self.layout.labels]  # opening, summary, its closing key
        for index, (segment, owner) in enumerate(zip(segments, owners, strict=True)):
            tokens = self.tokenize(segment)
            if index == 1:  # the runtime stops the summary at this many tokens
                tokens = tokens[: self.max_summary_tokens]
            answer += tokens
            labels += tokens if owner in trained else [IGNORE_INDEX] * len(tokens)
        answer.append(self.end_of_turn)
        labels.append(self.end_of_turn)
        budget = self.max_length - len(self.prompt.prefix) - len(self.prompt.suffix) - len(answer)
        if budget < 16:
            raise ValueError(f"max_length {self.max_length} leaves no room for ticket text; raise it")
        prompt = self.prompt.encode(str(row["text"]), budget)
        return EncodedExample(
            input_ids=prompt.tokens + answer,
            labels=[IGNORE_INDEX] * len(prompt.tokens) + labels,
            truncated=prompt.truncated,
        )
