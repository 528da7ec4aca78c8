"""What `ticketsmith doctor` found, as pydantic models: the `--json` output is their dump, and the
text output is made from the same values, so the two cannot disagree.

A section is None in a report that stopped before reaching it; `error` then says why, in one line."""

from typing import Literal

from pydantic import BaseModel, Field

CpuBuild = Literal["portable", "native"]
FitVerdict = Literal["cpu", "fits", "partial", "not_offloaded"]
GpuSource = Literal["llama.cpp", "nvidia-smi"]


class BuildInfo(BaseModel):
    """The llama.cpp that runs here, and the CPU it runs on."""

    llama_cpp_python: str
    backends: list[str] = Field(description="ggml's registered backends: CPU, CUDA, ...")
    cpu_build: CpuBuild = Field(description="portable: CPU variants loaded at run time; native: built for one CPU")
    cpu_variants: list[str] = Field(description="the CPU variant libraries shipped (portable builds)")
    cpu_variant: str | None = Field(description="the variant ggml chose for this CPU (portable builds)")
    gpu_offload: bool = Field(description="llama_supports_gpu_offload(): the build can put layers on a GPU")
    cpu_model: str | None
    cpu_flags: list[str] = Field(description="this CPU's AVX/AVX-512/AMX flags, from /proc/cpuinfo")
    llama_cpp_features: str = Field(description="llama_print_system_info(): the SIMD paths llama.cpp uses")


class ModelFile(BaseModel):
    """The model as the settings resolve it, checked before llama.cpp loads it."""

    path: str
    size_bytes: int
    sha256_prefix: str
    manifest_checked: bool = Field(description="its convert manifest's sha256 was compared with the file")
    lora: str | None
    label_head: str | None


class ServingInfo(BaseModel):
    """What the loaded model is served for (the worker's /healthz says the same)."""

    taxonomy: str = Field(description="its name; a run folder brings the taxonomy it was trained for")
    taxonomy_fingerprint: str
    prompt_version: str
    llm_trained: bool = Field(description="the GGUF (or LoRA) records training for this taxonomy")
    trained_fields: list[str] = Field(description="fields a trained part predicts; empty: every answer is reviewed")


class GpuCard(BaseModel):
    name: str
    source: GpuSource = Field(description="llama.cpp: a card it can offload to; nvidia-smi: one it cannot")
    free_bytes: int | None
    total_bytes: int


class GpuFit(BaseModel):
    verdict: FitVerdict
    fits: bool | None = Field(description="the whole model fits the card(s); None without a usable GPU")
    note: str


class OffloadInfo(BaseModel):
    """Where the layers went and what memory they take."""

    n_gpu_layers: int = Field(description="requested (-1: all)")
    offloaded_layers: int = Field(description="as llama.cpp's loader reported it; 0 where it cannot offload")
    total_layers: int = Field(description="repeating layers plus the output layer, as llama.cpp counts them")
    llama_cpp_says: str | None = Field(description="the loader's own line; None where the build cannot offload")
    weights_mib: dict[str, float] = Field(description="model weights per llama.cpp buffer type")
    rss_bytes: int | None = Field(description="this process's resident memory after the load")
    gpus: list[GpuCard]
    fit: GpuFit


class SampleTriage(BaseModel):
    """One fixed ticket through the real runtime, as the worker would triage it."""

    text: str
    labels: dict[str, str]
    lowest_confidence: float
    lowest_field: str
    needs_review: bool
    warm_up_ms: float = Field(description="evaluating the fixed prompt prefix, once per process")
    ms: float = Field(description="the ticket itself, after the warm-up")


class DoctorReport(BaseModel):
    ok: bool = False
    exit_code: int = 0
    error: str | None = None
    build: BuildInfo | None = None
    model: ModelFile | None = None
    serving: ServingInfo | None = None
    offload: OffloadInfo | None = None
    sample: SampleTriage | None = None
