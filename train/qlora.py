"""Whether training loads its base in 4 bits (QLoRA), checked before any data or weights are read.

transformers' `BitsAndBytesConfig` imports without bitsandbytes (the library is only looked for deep
inside `from_pretrained`), so importing it proves nothing. What QLoRA really needs is a CUDA GPU that
torch sees and a bitsandbytes whose native library was built for CUDA: its CPU library has no 4-bit
CUDA kernels, and a CUDA version it ships no binary for leaves it with a stand-in that fails on use.
Each failure is one line, so `ticketsmith train` stops with it (exit 2) instead of a traceback."""

import importlib.util
from typing import Literal

from ticketsmith.runtime.errors import ConfigError

Quantization = Literal["auto", "4bit", "none"]
GPU_EXTRA = "pip install 'ticketsmith[train,gpu]'"


def wants_4bit(quantization: Quantization, cuda: bool) -> bool:
    """`auto` is QLoRA on a CUDA GPU and plain LoRA on a CPU; `4bit` asks for QLoRA anywhere."""
    return quantization == "4bit" or (quantization == "auto" and cuda)


def qlora_blocker(cuda: bool) -> str | None:
    """Why QLoRA cannot run on this machine, in one line; None when it can."""
    if not cuda:
        return "QLoRA (quantization: 4bit) needs a CUDA GPU and torch sees none; use `quantization: none` on a CPU"
    if importlib.util.find_spec("bitsandbytes") is None:
        return f"QLoRA needs bitsandbytes, which is not installed: {GPU_EXTRA} (or set quantization: none)"
    try:
        from bitsandbytes.cextension import lib
    except Exception as exc:  # its import runs native set-up code that can fail in many ways
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"bitsandbytes cannot be imported ({reason}); see `python -m bitsandbytes`"
    if not getattr(lib, "compiled_with_cuda", False):
        return "bitsandbytes has no CUDA library for this torch/CUDA (see `python -m bitsandbytes`); reinstall it"
    return None


def plan_4bit(quantization: Quantization) -> bool:
    """Whether to load the base in 4 bits here; raises ConfigError with the reason when QLoRA is wanted
    but cannot run (a silent fall-back to 16-bit LoRA would not fit the 4 GB card QLoRA is for)."""
    import torch

    cuda = torch.cuda.is_available()
    if not wants_4bit(quantization, cuda):
        return False
    blocker = qlora_blocker(cuda)
    if blocker is not None:
        raise ConfigError(blocker)
    return True
