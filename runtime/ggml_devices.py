"""The GPUs llama.cpp can offload to, with their free and total memory, from ggml's device registry.

Read through ggml itself (the same library that libllama loaded, see ggml_backends._ggml), so the
answer is what llama.cpp will use, with no new dependency: on a CUDA build ggml asks the CUDA
runtime (cudaMemGetInfo). A CPU-only build has no GPU devices, whatever cards the box holds."""

import ctypes
from dataclasses import dataclass

from ticketsmith.runtime.ggml_backends import _ggml, ensure_loaded

# enum ggml_backend_dev_type: CPU, GPU, IGPU (shares host memory), ACCEL, META
_GPU_TYPES = {1: "gpu", 2: "igpu"}


@dataclass(frozen=True)
class GgmlGpu:
    name: str  # ggml's: CUDA0, Vulkan0, ...
    description: str  # the card: "NVIDIA GeForce GTX 1650"
    kind: str  # gpu (own memory) or igpu (host memory)
    free_bytes: int
    total_bytes: int


def gpu_devices() -> list[GgmlGpu]:
    """Every GPU device registered with ggml, in its order (llama.cpp offloads to these)."""
    ensure_loaded()  # a portable build registers its GPU backend only when loaded
    lib = _ggml()
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    for text_call in (lib.ggml_backend_dev_name, lib.ggml_backend_dev_description):
        text_call.argtypes = [ctypes.c_void_p]
        text_call.restype = ctypes.c_char_p
    size_p = ctypes.POINTER(ctypes.c_size_t)
    lib.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, size_p, size_p]
    lib.ggml_backend_dev_memory.restype = None
    found = []
    for index in range(lib.ggml_backend_dev_count()):
        device = lib.ggml_backend_dev_get(index)
        kind = _GPU_TYPES.get(lib.ggml_backend_dev_type(device))
        if kind is None:
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        lib.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
        found.append(
            GgmlGpu(
                (lib.ggml_backend_dev_name(device) or b"?").decode(errors="replace"),
                (lib.ggml_backend_dev_description(device) or b"").decode(errors="replace"),
                kind,
                free.value,
                total.value,
            )
        )
    return found
