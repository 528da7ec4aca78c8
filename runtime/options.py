"""The runtime's option types, apart from the modules that use them, so that reading settings (and
`ticketsmith --help`) does not import llama.cpp."""

import os
from typing import Literal

FlashAttention = Literal["auto", "on", "off"]
ExtraBuffers = Literal["auto", "on", "off"]
LabelSearch = Literal["exact", "greedy"]


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
