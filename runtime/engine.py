"""A thin owner of one llama.cpp model and context, over llama-cpp-python's C API.

The high-level `llama_cpp.Llama` keeps a single sequence; the decoder needs several (to score all
labels of a field in one batch), a unified KV cache and logits of chosen rows, hence this class."""

import ctypes
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import llama_cpp
import numpy as np
import numpy.typing as npt

from ticketsmith.runtime.cpu_backend import CpuBackend, choose
from ticketsmith.runtime.errors import ModelError
from ticketsmith.runtime.ggml_backends import BackendBuild, ensure_loaded
from ticketsmith.runtime.options import ExtraBuffers, FlashAttention

GGUF_MAGIC = b"GGUF"
_FLASH_ATTN_TYPES = {
    "auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
    "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
    "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED,
}
logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's own chatter stays quiet


@dataclass(frozen=True)
class BatchItem:
    token: int
    pos: int
    seqs: tuple[int, ...]  # a token shared by several sequences is evaluated once
    logits: bool


def check_gguf_file(path: Path) -> None:
    """Fail early, with a clear message, on a path that is not a readable GGUF file."""
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelError(f"model file cannot be read: {path} ({exc})") from None
    if magic != GGUF_MAGIC:
        raise ModelError(f"{path} is not a GGUF model file (it does not start with 'GGUF'); convert it first")


class LlamaEngine:
    """One model, one context with `n_seq_max` sequences sharing a unified KV cache."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int,
        n_threads: int,
        n_gpu_layers: int,
        n_seq_max: int,
        n_batch: int = 512,
        n_ubatch: int | None = None,
        lora_path: Path | None = None,
        flash_attn: FlashAttention = "off",
        extra_buffers: ExtraBuffers = "auto",
    ) -> None:
        check_gguf_file(model_path)
        if lora_path is not None:
            check_gguf_file(lora_path)
        self.backends: BackendBuild = ensure_loaded()  # before llama.cpp looks for backends itself
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = n_gpu_layers
        self.cpu: CpuBackend = choose(extra_buffers)
        model_params.use_extra_bufts = self.cpu.extra_buffers  # why: runtime/cpu_backend.py
        self._model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), model_params)
        if not self._model:
            raise ModelError(
                f"llama.cpp could not load {model_path}: the file is corrupt or of an unsupported architecture"
            )
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_seq_max = min(n_seq_max, llama_cpp.llama_max_parallel_sequences())
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = n_ctx
        ctx_params.n_batch = n_batch
        ctx_params.n_ubatch = n_ubatch or n_batch
        ctx_params.n_seq_max = self.n_seq_max
        ctx_params.kv_unified = True
        ctx_params.n_threads = n_threads
        ctx_params.n_threads_batch = n_threads
        ctx_params.no_perf = True
        ctx_params.flash_attn_type = _FLASH_ATTN_TYPES[flash_attn]
        self._ctx = llama_cpp.llama_init_from_model(self._model, ctx_params)
        if not self._ctx:
            llama_cpp.llama_model_free(self._model)
            raise ModelError(f"llama.cpp could not create a context of {n_ctx} tokens for {model_path}")
        self._lora = None
        if lora_path is not None:
            self._apply_lora(lora_path)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self.n_ctx = llama_cpp.llama_n_ctx(self._ctx)
        self.n_batch = n_batch
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, self.n_seq_max)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)

    def _apply_lora(self, lora_path: Path) -> None:
        self._lora = llama_cpp.llama_adapter_lora_init(self._model, str(lora_path).encode())
        applied = False
        if self._lora:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self._lora)
            applied = llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, (ctypes.c_float * 1)(1.0)) == 0
        if not applied:
            self.close()
            raise ModelError(f"llama.cpp cannot apply the LoRA adapter {lora_path} to this model (wrong base model?)")

    def close(self) -> None:
        if llama_cpp.llama_free is None:  # interpreter shutdown: the library is already unloaded
            return
        if getattr(self, "_batch", None) is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_lora", None):
            llama_cpp.llama_adapter_lora_free(self._lora)
            self._lora = None
        if getattr(self, "_model", None):
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()

    # --- vocabulary -------------------------------------------------------------------------
    @property
    def vocab(self) -> llama_cpp.llama_vocab_p:
        return cast("llama_cpp.llama_vocab_p", self._vocab)

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = False) -> list[int]:
        data = text.encode("utf-8", errors="replace")
        capacity = len(data) + 8
        buffer = (llama_cpp.llama_token * capacity)()
        count = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, capacity, add_special, parse_special)
        if count < 0:
            raise ModelError(f"tokenizer needs {-count} tokens for {len(data)} bytes")
        return list(buffer[:count])

    def token_bytes(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, 64, 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, -size, 0, False)
        return buffer.raw[:size]

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def is_control(self, token: int) -> bool:
        attr = llama_cpp.llama_vocab_get_attr(self._vocab, token)
        special = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
        return bool(attr & special)

    @property
    def n_layer(self) -> int:
        return int(llama_cpp.llama_model_n_layer(self._model))

    def token_eos(self) -> int:
        return int(llama_cpp.llama_vocab_eos(self._vocab))

    def metadata(self, key: str) -> str | None:
        buffer = ctypes.create_string_buffer(1 << 16)
        size = llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buffer, len(buffer))
        if size < 0:
            return None
        return buffer.value.decode("utf-8", errors="replace")

    def lora_metadata(self, key: str) -> str | None:
        """A metadata value of the applied LoRA adapter; None without an adapter or key."""
        if not self._lora:
            return None
        buffer = ctypes.create_string_buffer(1 << 16)
        size = llama_cpp.llama_adapter_meta_val_str(self._lora, key.encode(), buffer, len(buffer))
        if size < 0:
            return None
        return buffer.value.decode("utf-8", errors="replace")

    # --- evaluation -------------------------------------------------------------------------
    def decode(self, items: Sequence[BatchItem]) -> npt.NDArray[np.float32]:
        """Evaluate one batch; returns the logits of the items that asked for them, in order."""
        if len(items) > self.n_batch:
            raise ValueError(f"batch of {len(items)} tokens exceeds n_batch={self.n_batch}")
        batch = self._batch
        batch.n_tokens = len(items)
        for i, item in enumerate(items):
            batch.token[i] = item.token
            batch.pos[i] = item.pos
            batch.n_seq_id[i] = len(item.seqs)
            for j, seq in enumerate(item.seqs):
                batch.seq_id[i][j] = seq
            batch.logits[i] = item.logits
        code = llama_cpp.llama_decode(self._ctx, batch)
        if code != 0:
            raise ModelError(f"llama_decode failed with code {code} (context of {self.n_ctx} tokens full?)")
        rows = [i for i, item in enumerate(items) if item.logits]
        out = np.empty((len(rows), self.n_vocab), dtype=np.float32)
        for r, i in enumerate(rows):
            pointer = llama_cpp.llama_get_logits_ith(self._ctx, i)
            out[r] = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        return out

    def remove(self, seq: int, start: int, end: int = -1) -> None:
        """Drop positions [start, end) of `seq` (-1 seq: all sequences, -1 end: to the end)."""
        llama_cpp.llama_memory_seq_rm(self._memory, seq, start, end)

    def copy(self, source: int, target: int, start: int, end: int = -1) -> None:
        llama_cpp.llama_memory_seq_cp(self._memory, source, target, start, end)
