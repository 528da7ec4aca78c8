"""Quantize an f16 GGUF with llama.cpp's quantizer, writing ticketsmith's manifest keys into the output."""

import ctypes
import os
from pathlib import Path

import llama_cpp

from ticketsmith.convert.request import check_quant_type
from ticketsmith.runtime.errors import ModelError

QUANT_TYPES = {
    "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    "Q5_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M,
    "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "F16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
}
MAX_VALUE = 127  # llama.cpp's override strings are char[128]


def quantize(source: Path, target: Path, quant: str, metadata: dict[str, str]) -> None:
    """Write `target` from the f16 GGUF `source`; `metadata` becomes string keys of the output."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[check_quant_type(quant)]
    params.nthread = os.cpu_count() or 1
    overrides = (llama_cpp.llama_model_kv_override * (len(metadata) + 1))()  # zeroed end marker
    for slot, (key, value) in zip(overrides, metadata.items(), strict=False):
        if len(key.encode()) > MAX_VALUE or len(value.encode()) > MAX_VALUE:
            raise ValueError(f"GGUF override {key}={value!r} is longer than llama.cpp allows")
        slot.key = key.encode()
        slot.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
        slot.value.val_str = value.encode()
    params.kv_overrides = ctypes.cast(overrides, type(params.kv_overrides))
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params)) != 0:
        raise ModelError(f"llama.cpp could not quantize {source} to {quant}")
