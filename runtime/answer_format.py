"""The answer the model writes: compact JSON with a fixed key order, the summary first.

The grammar compiler, the decoder and the training targets all derive from FIELD_ORDER and
`key_prefix`, so the three can never disagree about the layout."""

import json
from collections.abc import Mapping

from ticketsmith.runtime.taxonomy import LABEL_FIELDS

FIELD_ORDER: tuple[str, ...] = ("summary", *LABEL_FIELDS)


def key_prefix(index: int) -> str:
    """The fixed text before the value of FIELD_ORDER[index], including the value's opening quote."""
    opener = "{" if index == 0 else '",'
    return f'{opener}"{FIELD_ORDER[index]}":"'


ANSWER_END = '"}'


def escape_json_string(value: str) -> str:
    """JSON string content without the quotes, non-ASCII kept as is (as the grammar expects)."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def label_suffix(field_name: str) -> str:
    """The fixed text after a field's value: the next key's prefix, or the end of the object."""
    index = FIELD_ORDER.index(field_name)
    return key_prefix(index + 1) if index + 1 < len(FIELD_ORDER) else ANSWER_END


def answer_segments(values: Mapping[str, str]) -> list[str]:
    """The answer cut where the decoder cuts it: the opening, the summary, then each label joined to
    the scaffolding after it. Training tokenizes segment by segment so that its targets are the token
    sequences the runtime scores."""
    segments = [key_prefix(0), escape_json_string(values["summary"]), key_prefix(1)]
    return segments + [values[name] + label_suffix(name) for name in FIELD_ORDER[1:]]


def render_answer(values: Mapping[str, str]) -> str:
    """The exact answer text for a ticket."""
    return "".join(answer_segments(values))
