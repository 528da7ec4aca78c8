"""llama.cpp's own log lines during one block of code, and what its model loader says in them.

llama.cpp has no call that returns how many layers it offloaded or where the weights went; its
loader only logs it ("load_tensors: offloaded 31/31 layers to GPU", "CUDA0 model buffer size =
...", printed only where the build can offload). The runtime keeps that log quiet (llama-cpp-python
routes it to stderr at ERROR), so `ticketsmith doctor` catches the lines of one model load here and
then gives llama-cpp-python its callback back."""

import contextlib
import ctypes
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import llama_cpp
from llama_cpp import _logger as llama_cpp_logger

# ggml_log_level (ggml.h: NONE, DEBUG, INFO, WARN, ERROR, CONT; llama-cpp-python's _logger still
# numbers them as an older ggml did). CONT continues the previous line at its level.
_ERROR_LEVEL = 4
_CONT_LEVEL = 5
_OFFLOADED = re.compile(r"offloaded (?P<done>\d+)/(?P<total>\d+) layers to GPU")
_BUFFER = re.compile(r"(?P<name>\S+) model buffer size =\s*(?P<mib>[0-9.]+) MiB")


@dataclass
class LlamaLog:
    """The lines llama.cpp logged while the block ran (a line's continuations joined to it)."""

    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _partial: str = ""
    _level: int = 0  # of the line being continued

    def add(self, level: int, text: str) -> None:
        if level != _CONT_LEVEL and not self._partial:
            self._level = level
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        for line in (part.strip() for part in complete):
            if line:
                self.lines.append(line)
                if self._level == _ERROR_LEVEL:
                    self.errors.append(line)


@dataclass(frozen=True)
class LoadReport:
    """What llama.cpp's loader logged about offloading; layers are None where it said nothing (a
    build without GPU offload does not log them)."""

    offloaded_layers: int | None
    total_layers: int | None
    line: str | None  # the loader's own words
    buffers_mib: dict[str, float]  # weights per buffer type: CPU_Mapped, CUDA0, ...


@contextlib.contextmanager
def captured() -> Iterator[LlamaLog]:
    """Collect llama.cpp's log lines, printing none; llama-cpp-python's callback is back afterwards."""
    log = LlamaLog()

    def collect(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        log.add(level, text.decode("utf-8", errors="replace"))

    callback = llama_cpp.llama_log_callback(collect)  # kept referenced until llama.cpp lets go of it
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    try:
        yield log
    finally:
        llama_cpp.llama_log_set(llama_cpp_logger.llama_log_callback, ctypes.c_void_p(0))


def load_report(log: LlamaLog) -> LoadReport:
    offloaded, total, said = None, None, None
    buffers: dict[str, float] = {}
    for line in log.lines:
        if (found := _OFFLOADED.search(line)) is not None:
            offloaded, total, said = int(found["done"]), int(found["total"]), line
        elif (buffer := _BUFFER.search(line)) is not None:
            buffers[buffer["name"]] = buffers.get(buffer["name"], 0.0) + float(buffer["mib"])
    return LoadReport(offloaded, total, said, buffers)
