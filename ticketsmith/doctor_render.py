"""The text form of a doctor report: one section at a time, plain aligned lines.

Plain lines rather than a rich table because each section is printed as soon as it is known: if
llama.cpp then crashes the process (a native build copied to an older CPU dies with "Illegal
instruction" in the model load), the build and the CPU flags are already on the screen. They also
grep and paste into a ticket as they are."""

from ticketsmith.doctor_report import BuildInfo, ModelFile, OffloadInfo, SampleTriage, ServingInfo

KEY_WIDTH = 18
MIB = 1024 * 1024
Rows = list[tuple[str, str]]


def _mib(size: float | None) -> str:
    return "unknown" if size is None else f"{size / MIB:,.1f} MiB"


def _build(build: BuildInfo) -> Rows:
    if build.cpu_build == "portable":
        cpu = f"portable: variant {build.cpu_variant or 'unknown'} chosen of {', '.join(build.cpu_variants)}"
    else:
        cpu = "native: CPU code built for one machine's CPU (not for copying to other CPUs)"
    offload = "yes" if build.gpu_offload else "no (CPU-only build)"
    return [
        ("llama-cpp-python", build.llama_cpp_python),
        ("backends", ", ".join(build.backends)),
        ("CPU backend", cpu),
        ("GPU offload", offload),
        ("CPU", build.cpu_model or "unknown"),
        ("CPU flags", " ".join(build.cpu_flags) or "none of avx2/avx512*/amx*"),
    ]


def _model(model: ModelFile) -> Rows:
    checked = " (matches its manifest)" if model.manifest_checked else ""
    return [
        ("path", model.path),
        ("size", _mib(model.size_bytes)),
        ("sha256", model.sha256_prefix + checked),
        ("LoRA", model.lora or "none"),
        ("label head", model.label_head or "none"),
    ]


def _serving(serving: ServingInfo) -> Rows:
    if serving.trained_fields:
        trained = f"yes: {', '.join(serving.trained_fields)}" + (" (LLM trained)" if serving.llm_trained else "")
    else:
        trained = "no: every answer goes to review (train one with `ticketsmith train --head-only`)"
    return [
        ("taxonomy", f"{serving.taxonomy} (fingerprint {serving.taxonomy_fingerprint})"),
        ("prompt", serving.prompt_version),
        ("trained for it", trained),
    ]


def _offload(offload: OffloadInfo) -> Rows:
    said = offload.llama_cpp_says or "nothing (this build cannot offload)"
    rows = [
        ("GPU layers", f"{offload.offloaded_layers}/{offload.total_layers} (requested {offload.n_gpu_layers})"),
        ("llama.cpp says", said),
        ("weights", ", ".join(f"{name} {mib:,.1f} MiB" for name, mib in offload.weights_mib.items()) or "not reported"),
        ("process RSS", _mib(offload.rss_bytes)),
    ]
    for card in offload.gpus:
        rows.append((f"GPU ({card.source})", f"{card.name}: {_mib(card.free_bytes)} free of {_mib(card.total_bytes)}"))
    rows.append(("fits the card", offload.fit.note))
    return rows


def _sample(sample: SampleTriage) -> Rows:
    return [
        ("ticket", sample.text),
        ("labels", ", ".join(f"{name}={label}" for name, label in sample.labels.items())),
        ("lowest confidence", f"{sample.lowest_confidence:.3f} ({sample.lowest_field})"),
        ("needs review", "yes" if sample.needs_review else "no"),
        ("time", f"{sample.ms:,.0f} ms (warm-up {sample.warm_up_ms:,.0f} ms, once per process)"),
    ]


Section = BuildInfo | ModelFile | ServingInfo | OffloadInfo | SampleTriage


def _titled(section: Section) -> tuple[str, Rows]:
    if isinstance(section, BuildInfo):
        return "llama.cpp build", _build(section)
    if isinstance(section, ModelFile):
        return "model", _model(section)
    if isinstance(section, ServingInfo):
        return "served for", _serving(section)
    if isinstance(section, OffloadInfo):
        return "offload and memory", _offload(section)
    return "sample triage", _sample(section)


def render_section(section: Section) -> str:
    title, rows = _titled(section)
    return "\n".join([title, *(f"  {key:<{KEY_WIDTH}} {value}" for key, value in rows)])
