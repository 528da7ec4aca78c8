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


def render_answer(values: Mapping[str, str]) -> str:
    """The exact answer text for a ticket, e.g. the training target."""
    parts = [key_prefix(i) + escape_json_string(values[field]) for i, field in enumerate(FIELD_ORDER)]
    return "".join(parts) + ANSWER_END
