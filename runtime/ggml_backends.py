"""Which llama.cpp backends this process has, loading them first where the build needs it.

`make install` builds llama.cpp portably (GGML_NATIVE=OFF, GGML_BACKEND_DL=ON,
GGML_CPU_ALL_VARIANTS=ON): the CPU code is not linked into libggml but shipped as one shared
library per instruction set (`libggml-cpu-x64.so` for any x86-64 up to `libggml-cpu-sapphirerapids.so`),
and ggml scores them on the running CPU and keeps the best. llama-cpp-python 0.3.36 never asks ggml
to load them, and ggml's own default search (the executable's folder, the current folder) looks next
to `python`, not next to the bindings' libraries: without this module such a build finds "no
backends" and cannot load a model. A native build (`make native`) has its CPU backend linked in and
registered at start-up; then there is nothing to load and no variant to report."""

import ctypes
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from ticketsmith.runtime.errors import ModelError

log = logging.getLogger(__name__)
LIB_DIR = Path(llama_cpp.__file__).resolve().parent / "lib"
_VARIANT_FILE = re.compile(r"libggml-cpu-(?P<name>[A-Za-z0-9_.]+)\.so$")
_lock = threading.Lock()
_loaded: "BackendBuild | None" = None


@dataclass(frozen=True)
class BackendBuild:
    """What llama.cpp runs on in this process."""

    backends: tuple[str, ...]  # registered backends by ggml's names: "CPU", "CUDA", ...
    variants: tuple[str, ...]  # CPU variant libraries shipped with the build; empty for a native build
    chosen: str | None  # the variant ggml loaded for this CPU; None for a native build

    @property
    def dynamic(self) -> bool:
        return bool(self.variants)

    @property
    def cuda(self) -> bool:
        return "CUDA" in self.backends

    def describe(self) -> str:
        if not self.dynamic:
            return f"llama.cpp backends: {', '.join(self.backends)} (CPU code built for this machine)"
        return (
            f"llama.cpp backends: {', '.join(self.backends)}; CPU variant {self.chosen} "
            f"(best of {len(self.variants)} for this CPU)"
        )


def _ggml() -> ctypes.CDLL:
    """The libggml that libllama loaded. The wheel holds libggml.so, .so.0 and .so.0.x as copies, not
    links, and dlopen by path would load a second copy with a registry of its own (llama.cpp then
    finds "no backends"): asking for the soname by name alone returns the copy already loaded."""
    sonames = sorted((p.name for p in LIB_DIR.glob("libggml.so.*")), key=len)
    lib = ctypes.CDLL(sonames[0] if sonames else str(LIB_DIR / "libggml.so"))
    lib.ggml_backend_reg_count.restype = ctypes.c_size_t
    lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_reg_get.restype = ctypes.c_void_p
    lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_reg_name.restype = ctypes.c_char_p
    lib.ggml_backend_reg_by_name.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_reg_by_name.restype = ctypes.c_void_p
    lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_load_all_from_path.restype = None
    return lib


def shipped_variants(lib_dir: Path = LIB_DIR) -> tuple[str, ...]:
    return tuple(sorted(m["name"] for p in lib_dir.glob("libggml-cpu-*.so") if (m := _VARIANT_FILE.search(p.name))))


def _mapped_variant() -> str | None:
    """The variant library mapped into this process. ggml unloads the ones it scored lower, so the
    one left is its choice; ggml has no call that names it."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: the choice is still made, only not named
        return None
    found = {m["name"] for line in maps.splitlines() if (m := _VARIANT_FILE.search(line))}
    return found.pop() if len(found) == 1 else None


def _registered(lib: ctypes.CDLL) -> tuple[str, ...]:
    names = (lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)) for i in range(lib.ggml_backend_reg_count()))
    return tuple(name.decode() for name in names if name)


def ensure_loaded() -> BackendBuild:
    """Load the build's dynamic backends once per process (before any model loads) and say what runs.
    Raises ModelError when no CPU backend can be had: llama.cpp would fail later with less to go on."""
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        lib = _ggml()
        variants = shipped_variants()
        if not lib.ggml_backend_reg_by_name(b"CPU"):
            # Loads the best CPU variant and any GPU backend the build has (libggml-cuda.so, ...).
            lib.ggml_backend_load_all_from_path(str(LIB_DIR).encode())
        if not lib.ggml_backend_reg_by_name(b"CPU"):
            raise ModelError(
                f"llama.cpp has no CPU backend: none of {LIB_DIR}/libggml-cpu*.so loads on this CPU "
                "(an incomplete build? reinstall with `make install`)"
            )
        _loaded = BackendBuild(_registered(lib), variants, _mapped_variant() if variants else None)
        log.info(_loaded.describe())
        return _loaded
