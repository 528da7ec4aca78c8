"""Facts about the machine itself, read without llama.cpp: the CPU's instruction-set flags, this
process's resident memory, and the NVIDIA cards `nvidia-smi` sees.

`ticketsmith doctor` sets them beside what llama.cpp reports, so that a mismatch shows: a native
build copied to a CPU without AVX-512 (it dies with "Illegal instruction"), or a box whose GPU the
installed build cannot use (a CPU-only wheel on a CUDA machine). Nothing here may raise: a fact that
cannot be read is reported as unknown, never as a failure."""

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
PROC_STATUS = Path("/proc/self/status")
# The flags that decide which llama.cpp CPU variant can run here (ggml scores its variants on them).
_RELEVANT_FLAG = re.compile(r"^(sse4_2|avx|avx2|avx_vnni|bmi2|fma|f16c|avx512.*|amx.*)$")
_SMI_QUERY = "--query-gpu=name,memory.used,memory.total"
_SMI_TIMEOUT_S = 10


@dataclass(frozen=True)
class HostCpu:
    model: str | None  # /proc/cpuinfo's "model name"
    flags: tuple[str, ...]  # the relevant ones only, sorted


@dataclass(frozen=True)
class SmiGpu:
    """One card as `nvidia-smi` reports it (MiB, as it counts)."""

    name: str
    used_mib: int
    total_mib: int


def host_cpu(cpuinfo: Path = CPUINFO) -> HostCpu:
    """The first processor's model and relevant flags (every core of one machine has the same)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux
        return HostCpu(None, ())
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:  # a blank line ends the first processor's block
                break
            continue
        fields.setdefault(key.strip(), value.strip())
    flags = sorted(flag for flag in fields.get("flags", "").split() if _RELEVANT_FLAG.match(flag))
    return HostCpu(fields.get("model name"), tuple(flags))


def rss_bytes(status: Path = PROC_STATUS) -> int | None:
    """This process's resident memory now (VmRSS); None where /proc cannot tell."""
    try:
        for line in status.read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def parse_smi(output: str) -> list[SmiGpu]:
    """`nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader,nounits` lines."""
    gpus = []
    for line in output.splitlines():
        parts = [part.strip() for part in line.rsplit(",", 2)]
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            gpus.append(SmiGpu(parts[0], int(parts[1]), int(parts[2])))
    return gpus


def smi_gpus() -> list[SmiGpu]:
    """The NVIDIA cards on this box, whatever llama.cpp was built for; empty without nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, _SMI_QUERY, "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_smi(done.stdout) if done.returncode == 0 else []
