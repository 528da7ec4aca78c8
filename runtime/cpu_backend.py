"""Which of llama.cpp's CPU weight layouts the runtime lets it use, and what it found on this CPU.

llama.cpp may place weights in "extra" CPU buffer types at load: the AMX buffer (Intel Xeons from
Sapphire Rapids on, when the build compiled its AMX path) and the repack buffer (weights interleaved
for faster AVX2/AVX-512 kernels on some quant types). The AMX path segfaults on the first decode on
such machines (llama.cpp issue 20824, never fixed upstream), so `auto` keeps weights out of both
wherever the build reports AMX; llama.cpp offers no switch for AMX alone. Elsewhere `auto` keeps
repacking on. `on` forces both back on (see docs/cpu.md for the risk), `off` forces both off."""

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import llama_cpp
import llama_cpp.llama_cpp as llama_cpp_lib

from ticketsmith.runtime.ggml_backends import ensure_loaded
from ticketsmith.runtime.options import ExtraBuffers

log = logging.getLogger(__name__)
_reported: set[tuple[str, bool]] = set()


@dataclass(frozen=True)
class CpuBackend:
    """llama.cpp's own description of the CPU it runs on, and the weight layouts chosen for it."""

    features: str  # llama_print_system_info(): the SIMD paths this build uses on this CPU
    amx: bool  # the build's AMX path is compiled in and this CPU has AMX
    extra_buffers: bool  # weights may go to the AMX and repack buffer types

    def describe(self) -> str:
        layouts = "on" if self.extra_buffers else "off"
        amx = "AMX found" if self.amx else "no AMX"
        return f"llama.cpp CPU features: {self.features}; {amx}; AMX/repacked weight layouts {layouts}"


def system_features() -> str:
    ensure_loaded()  # a portable build reports no CPU features until its CPU variant is loaded
    return " ".join(llama_cpp.llama_print_system_info().decode("utf-8", errors="replace").split())


def choose(requested: ExtraBuffers) -> CpuBackend:
    """The layouts for `requested` on this machine; logged once per process and choice."""
    features = system_features()
    amx = "AMX_INT8 = 1" in features
    extra = requested == "on" or (requested == "auto" and not amx)
    backend = CpuBackend(features, amx, extra)
    if (features, extra) not in _reported:
        _reported.add((features, extra))
        log.info(backend.describe())
        if amx and extra:
            log.warning("llama.cpp's AMX path is on (cpu_extra_buffers: on); it has crashed on AMX Xeons")
    return backend


@contextlib.contextmanager
def default_model_params(backend: CpuBackend) -> Iterator[None]:
    """Make llama-cpp-python's high-level `Llama` load with the same layouts as the runtime's engine:
    it builds its model parameters from `llama_model_default_params` and offers no switch of its own."""
    original = llama_cpp_lib.llama_model_default_params

    def patched() -> llama_cpp.llama_model_params:
        params: llama_cpp.llama_model_params = original()
        params.use_extra_bufts = backend.extra_buffers
        return params

    llama_cpp_lib.llama_model_default_params = patched
    try:
        yield
    finally:
        llama_cpp_lib.llama_model_default_params = original
