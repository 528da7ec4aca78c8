"""llama.cpp's own GBNF engine as an acceptor: compiles a grammar (failing loudly if llama.cpp
cannot) and checks token sequences against it. The runtime passes every answer through it."""

import ctypes
from collections.abc import Iterable

import llama_cpp
import numpy as np
import numpy.typing as npt

from ticketsmith.runtime.engine import LlamaEngine
from ticketsmith.runtime.errors import ConfigError

_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.float32), ("p", np.float32)], align=True)


class GrammarState:
    """One walk through the grammar, token by token."""

    def __init__(self, engine: LlamaEngine, gbnf: str) -> None:
        self._engine = engine
        self._sampler = llama_cpp.llama_sampler_init_grammar(engine.vocab, gbnf.encode("utf-8"), b"root")
        if not self._sampler:
            raise ConfigError("llama.cpp cannot compile the grammar; regenerate it with `ticketsmith grammar`")

    def close(self) -> None:
        if self._sampler:
            llama_cpp.llama_sampler_free(self._sampler)
            self._sampler = None

    def __del__(self) -> None:
        self.close()

    def allowed_mask(self, tokens: npt.NDArray[np.intc]) -> npt.NDArray[np.bool_]:
        """Which of `tokens` the grammar allows next (end-of-generation tokens: only when complete)."""
        data = np.zeros(len(tokens), dtype=_TOKEN_DATA)
        data["id"] = tokens
        array = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(tokens), selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(array))
        # the grammar sampler only lowers rejected logits to -inf; it neither reorders nor shrinks the array
        return np.asarray(np.isfinite(data["logit"]), dtype=bool)

    def allows(self, token: int) -> bool:
        return bool(self.allowed_mask(np.array([token], dtype=np.intc))[0])

    def accept(self, token: int) -> None:
        """Advance; the caller checks `allows` first (llama.cpp aborts on a token it cannot accept)."""
        llama_cpp.llama_sampler_accept(self._sampler, token)

    def is_complete(self) -> bool:
        return self.allows(self._engine.token_eos())


def grammar_accepts(engine: LlamaEngine, gbnf: str, tokens: Iterable[int]) -> bool:
    """True when the whole token sequence is a complete sentence of the grammar."""
    state = GrammarState(engine, gbnf)
    try:
        for token in tokens:
            if not state.allows(token):
                return False
            state.accept(token)
        return state.is_complete()
    finally:
        state.close()
