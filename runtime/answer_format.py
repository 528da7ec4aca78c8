"""The answer the model writes: compact JSON with a fixed key order, the summary first, then the
label fields the taxonomy defines.

The grammar compiler, the decoder and the training targets all derive from one `AnswerLayout`, so
the three can never disagree about the layout."""

import json
from collections.abc import Mapping
from dataclasses import dataclass

from ticketsmith.runtime.taxonomy import LABEL_FIELDS, LabelField, Taxonomy

ANSWER_END = '"}'


def escape_json_string(value: str) -> str:
    """JSON string content without the quotes, non-ASCII kept as is (as the grammar expects)."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


@dataclass(frozen=True)
class AnswerLayout:
    """The answer's keys in order: the summary, then `labels` (a taxonomy's fields, in LABEL_FIELDS order)."""

    labels: tuple[LabelField, ...]

    @classmethod
    def of(cls, taxonomy: Taxonomy) -> "AnswerLayout":
        return cls(taxonomy.fields)

    @property
    def fields(self) -> tuple[str, ...]:
        return ("summary", *self.labels)

    def key_prefix(self, index: int) -> str:
        """The fixed text before the value of fields[index], including the value's opening quote."""
        opener = "{" if index == 0 else '",'
        return f'{opener}"{self.fields[index]}":"'

    def label_suffix(self, field_name: str) -> str:
        """The fixed text after a field's value: the next key's prefix, or the end of the object."""
        index = self.fields.index(field_name)
        return self.key_prefix(index + 1) if index + 1 < len(self.fields) else ANSWER_END

    def answer_segments(self, values: Mapping[str, str]) -> list[str]:
        """The answer cut where the decoder cuts it: the opening, the summary, then each label joined to
        the scaffolding after it. Training tokenizes segment by segment so that its targets are the token
        sequences the runtime scores."""
        segments = [self.key_prefix(0), escape_json_string(values["summary"]), self.label_suffix("summary")]
        return segments + [values[name] + self.label_suffix(name) for name in self.labels]

    def render_answer(self, values: Mapping[str, str]) -> str:
        """The exact answer text for a ticket."""
        return "".join(self.answer_segments(values))


FULL_LAYOUT = AnswerLayout(LABEL_FIELDS)  # a taxonomy that defines every field
