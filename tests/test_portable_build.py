"""The installed llama.cpp build has a CPU backend and, when built portably, loaded the best variant.

Runs through the installed package, as the service does: on a portable build (`make install`) the
CPU code ships as one library per instruction set and must be loaded by the runtime before a model
can load; on a native build (`make native`) it is linked in and there is no variant to check."""

from pathlib import Path

import pytest

from ticketsmith.runtime.default_model import embedded_model_path
from ticketsmith.runtime.engine import LlamaEngine
from ticketsmith.runtime.ggml_backends import LIB_DIR, ensure_loaded

# The x86-64 variants' instruction sets, from ggml/src/CMakeLists.txt (GGML_CPU_ALL_VARIANTS), as
# /proc/cpuinfo names them; `x64` is the baseline any x86-64 CPU runs.
_AVX512 = {"avx2", "bmi2", "fma", "f16c", "avx512f"}
REQUIRES: dict[str, set[str]] = {
    "x64": set(),
    "sse42": {"sse4_2"},
    "sandybridge": {"sse4_2", "avx"},
    "ivybridge": {"avx", "f16c"},
    "piledriver": {"avx", "f16c", "fma"},
    "haswell": {"avx2", "bmi2", "fma", "f16c"},
    "skylakex": _AVX512,
    "cannonlake": _AVX512 | {"avx512vbmi"},
    "cascadelake": _AVX512 | {"avx512_vnni"},
    "icelake": _AVX512 | {"avx512vbmi", "avx512_vnni"},
    "cooperlake": _AVX512 | {"avx512_vnni", "avx512_bf16"},
    "zen4": _AVX512 | {"avx512vbmi", "avx512_vnni", "avx512_bf16"},
    "alderlake": {"avx2", "bmi2", "fma", "f16c", "avx_vnni"},
    "sapphirerapids": _AVX512 | {"avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"},
}


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_a_cpu_backend_is_loaded() -> None:
    build = ensure_loaded()
    assert "CPU" in build.backends, build


def test_the_portable_build_picked_the_best_variant_for_this_cpu() -> None:
    build = ensure_loaded()
    if not build.dynamic:
        pytest.skip(f"native build: no libggml-cpu-*.so variants in {LIB_DIR}")
    print(build.describe())  # shown with -s: which variant this machine got
    assert "x64" in build.variants, "the baseline variant for any x86-64 CPU is missing"
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo to compare against")
    flags = cpu_flags()
    runnable = {name for name, needs in REQUIRES.items() if needs <= flags and name in build.variants}
    assert build.chosen in runnable, f"{build.chosen} needs {REQUIRES.get(build.chosen or '', '?')}"
    widest = max(len(REQUIRES[name]) for name in runnable)
    assert len(REQUIRES[build.chosen]) == widest, f"{build.chosen} chosen where {sorted(runnable)} run here"


@pytest.mark.model  # loads the real model
def test_the_model_loads_on_the_loaded_backend() -> None:
    engine = LlamaEngine(embedded_model_path(), n_ctx=256, n_threads=2, n_gpu_layers=0, n_seq_max=1)
    try:
        assert engine.backends.backends == ensure_loaded().backends
        assert engine.n_layer > 0 and engine.tokenize("printer jams")
    finally:
        engine.close()
