"""The checks of `ticketsmith doctor`, one function per report section, each through the runtime's
own code (the settings, `resolve`, `ensure_loaded`, `Triager`): a doctor that took another path than
the worker could pass while the worker fails.

Imports llama.cpp: `cli_doctor` imports this module inside the command only, so that `--help` stays
light."""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from ticketsmith.doctor_fit import MIB, gpu_fit
from ticketsmith.doctor_report import BuildInfo, GpuCard, ModelFile, OffloadInfo, SampleTriage, ServingInfo
from ticketsmith.runtime.cpu_backend import system_features
from ticketsmith.runtime.engine import check_gguf_file
from ticketsmith.runtime.errors import ModelError
from ticketsmith.runtime.ggml_backends import ensure_loaded
from ticketsmith.runtime.ggml_devices import gpu_devices
from ticketsmith.runtime.host import host_cpu, rss_bytes, smi_gpus
from ticketsmith.runtime.llama_log import LoadReport, captured, load_report
from ticketsmith.runtime.model_manifest import ModelManifest, manifest_path
from ticketsmith.runtime.served_model import resolve
from ticketsmith.runtime.settings import RuntimeSettings
from ticketsmith.runtime.triager import Triager
from ticketsmith.versions import installed_version

# Short, unambiguous, in the default taxonomy's words: any model should label it without trouble.
SAMPLE_TICKET = "Outlook keeps asking for my password since this morning and I cannot send any email."
SHA_PREFIX = 12
TriagerLoader = Callable[[RuntimeSettings], Triager]


@dataclass(frozen=True)
class LoadedModel:
    """A loaded triager and what llama.cpp's loader said while it loaded."""

    triager: Triager
    report: LoadReport


def build_info() -> BuildInfo:
    backends = ensure_loaded()  # raises ModelError where no CPU variant loads on this CPU
    cpu = host_cpu()
    return BuildInfo(
        llama_cpp_python=installed_version("llama-cpp-python"),
        backends=list(backends.backends),
        cpu_build="portable" if backends.dynamic else "native",
        cpu_variants=list(backends.variants),
        cpu_variant=backends.chosen,
        gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
        cpu_model=cpu.model,
        cpu_flags=list(cpu.flags),
        llama_cpp_features=system_features(),
    )


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:  # file_digest reads in blocks: a 1.5B model is a gigabyte
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _check_manifest(gguf: Path, digest: str) -> bool:
    """Compare with the sha256 `convert` recorded beside the GGUF; False where there is no manifest."""
    manifest_file = manifest_path(gguf)
    if not manifest_file.is_file():
        return False
    try:
        manifest = ModelManifest.model_validate_json(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{manifest_file} is corrupt ({str(exc).splitlines()[0]}): convert again") from None
    if manifest.sha256 != digest:
        raise ModelError(f"{gguf} is corrupt: its sha256 differs from {manifest_file.name}; copy or convert it again")
    return True


def model_file(settings: RuntimeSettings) -> ModelFile:
    """The GGUF the settings name, by the runtime's own resolution; raises ModelError when it is
    missing, not a GGUF, or differs from its manifest, before llama.cpp is asked to load it."""
    served = resolve(settings.model_path)
    check_gguf_file(served.gguf)
    if settings.lora_path is not None:
        check_gguf_file(settings.lora_path)
    try:
        digest = _sha256(served.gguf)
    except OSError as exc:
        raise ModelError(f"model file cannot be read: {served.gguf} ({exc})") from None
    return ModelFile(
        path=str(served.gguf),
        size_bytes=served.gguf.stat().st_size,
        sha256_prefix=digest[:SHA_PREFIX],
        manifest_checked=_check_manifest(served.gguf, digest),
        lora=str(settings.lora_path) if settings.lora_path is not None else None,
        label_head=str(served.head) if served.head is not None else None,
    )


def load(settings: RuntimeSettings, loader: TriagerLoader) -> LoadedModel:
    """Load through `loader` (the real Triager; a test passes its session one) while catching
    llama.cpp's log: it alone says how many layers went to the GPU, or why a load failed."""
    with captured() as log:
        try:
            triager = loader(settings)
        except ModelError as exc:
            said = f" (llama.cpp: {log.errors[0]})" if log.errors else ""  # the first says why, the rest that it failed
            raise ModelError(f"{exc}{said}") from None
    return LoadedModel(triager, load_report(log))


def serving_info(triager: Triager) -> ServingInfo:
    info = triager.model_info()
    return ServingInfo(
        taxonomy=triager.taxonomy.name,
        taxonomy_fingerprint=info["taxonomy"],
        prompt_version=info["prompt_version"],
        llm_trained=triager.llm_trained,
        trained_fields=list(triager.trained_fields),
    )


def gpu_cards() -> list[GpuCard]:
    """The GPUs llama.cpp can use; else the NVIDIA cards it cannot (a CPU-only build on a GPU box)."""
    usable = [
        GpuCard(name=gpu.name, source="llama.cpp", free_bytes=gpu.free_bytes, total_bytes=gpu.total_bytes)
        for gpu in gpu_devices()
    ]
    if usable:
        return usable
    return [
        GpuCard(
            name=card.name,
            source="nvidia-smi",
            free_bytes=(card.total_mib - card.used_mib) * MIB,
            total_bytes=card.total_mib * MIB,
        )
        for card in smi_gpus()
    ]


def offload_info(loaded: LoadedModel, build: BuildInfo, model: ModelFile) -> OffloadInfo:
    total = loaded.report.total_layers or loaded.triager.engine.n_layer + 1
    offloaded = loaded.report.offloaded_layers or 0
    gpus = gpu_cards()
    weights = loaded.report.buffers_mib
    return OffloadInfo(
        n_gpu_layers=loaded.triager.settings.n_gpu_layers,
        offloaded_layers=offloaded,
        total_layers=total,
        llama_cpp_says=loaded.report.line,
        weights_mib=weights,
        rss_bytes=rss_bytes(),
        gpus=gpus,
        fit=gpu_fit(gpus, build.gpu_offload, offloaded, total, model.size_bytes, weights),
    )


def sample_triage(triager: Triager, text: str = SAMPLE_TICKET) -> SampleTriage:
    """Triage `text` after a warm-up, as the worker does, so that `ms` is a ticket's steady cost.
    Raises whatever the runtime raises: the caller turns it into exit 1."""
    started = time.perf_counter()
    triager.warm_up()
    warmed = time.perf_counter()
    result = triager.triage(text)
    done = time.perf_counter()
    fields = triager.taxonomy.fields
    confidence = result.confidence.model_dump()
    lowest = min(fields, key=lambda name: confidence[name])
    return SampleTriage(
        text=text,
        labels={name: str(getattr(result, name)) for name in fields},
        lowest_confidence=result.overall_confidence,
        lowest_field=lowest,
        needs_review=result.needs_review,
        warm_up_ms=round((warmed - started) * 1000, 1),
        ms=round((done - warmed) * 1000, 1),
    )
