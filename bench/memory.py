"""Memory of the runtime: peak RSS while triaging, and llama.cpp's own buffers (weights, KV cache,
compute), from which the `n_gpu_layers` that fits a GPU of a given size follows.

    python -m bench.memory [--model a.gguf --model b.gguf] [--stand-in qwen2.5-1.5b] [--gpu-gib 4]

Without `--model`, the embedded default is measured. `--stand-in` builds a GGUF with the tensor
shapes of a published model and random weights (no weights of it can be had offline), through the
project's own conversion path (llama.cpp's converter, then Q4_K_M): memory depends on the shapes,
not on the values. Its answers are noise; its figures are the real model's. Writes
bench/results/memory.{json,md}.

The GPU figure is read off the CPU buffers that llama.cpp allocates for the same model and context
(on a GPU the offloaded layers' weights, their KV cache and the compute buffer move to video
memory). The CUDA context and cuBLAS workspace come on top and cannot be measured without a GPU:
`CUDA_OVERHEAD_MIB` is an allowance, not a measurement."""

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

REPO = Path(__file__).resolve().parent.parent
CUDA_OVERHEAD_MIB = 400.0
# The shapes of published models (their config.json); weights are random. Qwen2.5-1.5B is built as
# a llama-architecture model of the same dimensions: the two differ by the q/k/v biases (about 0.06 MB
# in all), and llama.cpp's converter reads the embedded tokenizer for llama but refuses it for qwen2
# (it does not recognise the tokenizer's pre-tokenizer hash there).
STAND_INS: dict[str, dict[str, Any]] = {
    "qwen2.5-1.5b": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "head_dim": 128,
    },
}
# What the child process prints: llama.cpp's buffer lines, then a JSON line of its own.
_BUFFER = re.compile(r"(?P<device>\S+) (?P<kind>model|KV|compute) buffer size =\s+(?P<mib>[\d.]+) MiB")
_CHILD = """
import json, logging, sys
from ticketsmith.runtime.settings import load_settings
from ticketsmith.runtime.triager import Triager
logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG)  # llama.cpp's buffer sizes on stderr
model = sys.argv[1] or None
taxonomy = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
triager = Triager(load_settings(model_path=model, taxonomy_path=taxonomy, n_threads=int(sys.argv[2])))
for text in ("printer jam", "VPN down for everyone since this morning", "new laptop please"):
    triager.triage(text)
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "peak_rss_mib": int(status["VmHWM"].split()[0]) / 1024,
    "n_layer": triager.engine.n_layer, "n_ctx": triager.engine.n_ctx,
    "file_mib": triager.model_path.stat().st_size / 2**20,
}))
"""


def measure(model: Path | None, threads: int, taxonomy: Path | None = None) -> dict[str, Any]:
    """Peak RSS and llama.cpp's buffers of a runtime that loads `model` and triages three tickets.

    The peak is the child's VmHWM, not getrusage's ru_maxrss: Linux carries the parent's peak over
    into the child's ru_maxrss at exec, so a parent holding models would inflate it."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(model or ""), str(threads), str(taxonomy or "")],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the runtime failed on {model}:\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    buffers: dict[str, float] = {}
    for match in _BUFFER.finditer(done.stderr):
        # CPU_REPACK: a CPU-only re-layout of quantized weights, in place of their mapped pages
        kind = "cpu_repack" if match["device"].endswith("_REPACK") else match["kind"]
        buffers[kind] = buffers.get(kind, 0.0) + float(match["mib"])
    report["buffers_mib"] = buffers
    return report


def gpu_fit(report: dict[str, Any], gpu_gib: float) -> dict[str, Any]:
    """The largest n_gpu_layers whose weights, KV cache and compute buffer fit the card, from the
    CPU buffers (layers are taken as equal; the output layer and embeddings as one more)."""
    buffers = report["buffers_mib"]
    fixed = CUDA_OVERHEAD_MIB + buffers.get("compute", 0.0)
    layered = buffers.get("model", 0.0) + buffers.get("KV", 0.0)
    layers = max(0, min(report["n_layer"] + 1, int((gpu_gib * 1024 - fixed) // (layered / (report["n_layer"] + 1)))))
    total = layered + fixed
    return {
        "gpu_gib": gpu_gib,
        "all_layers_need_mib": round(total, 1),
        "n_gpu_layers": -1 if layers > report["n_layer"] else layers,
        "cuda_overhead_allowance_mib": CUDA_OVERHEAD_MIB,
    }


def build_stand_in(name: str, folder: Path, out: Path) -> Path:
    """A Q4_K_M GGUF with the shapes of `name` and random weights, the embedded model's tokenizer
    padded to the config's vocabulary (llama.cpp's converter fills the rest with unused tokens)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from ticketsmith.convert.pipeline import convert_to_f16_gguf
    from ticketsmith.convert.quantize import quantize
    from ticketsmith.runtime.default_model import embedded_model_path
    from ticketsmith.train.base_model import go_offline, hf_folder_from_gguf

    go_offline()
    hf = folder / name
    config = AutoConfig.for_model(**STAND_INS[name])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    model.save_pretrained(hf)
    del model
    tokenizer_source = hf_folder_from_gguf(embedded_model_path())
    for item in tokenizer_source.iterdir():
        if item.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(item, hf / item.name)
    f16 = folder / f"{name}.F16.gguf"
    convert_to_f16_gguf(hf, f16)
    shutil.rmtree(hf)
    target = out / f"{name}-stand-in.Q4_K_M.gguf"
    quantize(f16, target, "Q4_K_M", {})
    f16.unlink()
    return target


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Runtime memory",
        "",
        "| model | file MiB | peak RSS MiB | weights MiB | CPU repack MiB | KV MiB | compute MiB | n_ctx "
        "| GPU: all layers need MiB | n_gpu_layers for the card |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, r in results.items():
        b, fit = r["buffers_mib"], r["gpu"]
        lines.append(
            f"| {model} | {r['file_mib']:.0f} | {r['peak_rss_mib']:.0f} | {b.get('model', 0):.0f} "
            f"| {b.get('cpu_repack', 0):.0f} | {b.get('KV', 0):.0f} | {b.get('compute', 0):.0f} | {r['n_ctx']} "
            f"| {fit['all_layers_need_mib']:.0f} | {fit['n_gpu_layers']} ({fit['gpu_gib']} GiB) |"
        )
    lines += ["", f"GPU figures: llama.cpp's CPU buffers plus a {CUDA_OVERHEAD_MIB:.0f} MiB allowance for CUDA.", ""]
    return "\n".join(lines)


def main(
    model: Annotated[list[Path] | None, typer.Option(help="GGUF to measure (repeatable; default: embedded)")] = None,
    stand_in: Annotated[list[str] | None, typer.Option(help=f"build and measure: {', '.join(STAND_INS)}")] = None,
    gpu_gib: Annotated[float, typer.Option(help="video memory of the target card")] = 4.0,
    threads: Annotated[int, typer.Option()] = 2,
    out: Annotated[Path, typer.Option(help="results folder")] = REPO / "bench" / "results",
) -> None:
    unknown = set(stand_in or ()) - STAND_INS.keys()
    if unknown:
        raise typer.BadParameter(f"unknown stand-in {', '.join(sorted(unknown))}; choose from {', '.join(STAND_INS)}")
    models: list[Path | None] = list(model) if model else [None]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        models += [build_stand_in(name, Path(scratch), out) for name in stand_in or ()]
    results: dict[str, dict[str, Any]] = {}
    for path in models:
        report = measure(path, threads)
        report["gpu"] = gpu_fit(report, gpu_gib)
        results[str(path or "embedded default")] = report
        print(f"{path or 'embedded default'}: {report}", file=sys.stderr)
    (out / "memory.json").write_text(json.dumps(results, indent=2))
    (out / "memory.md").write_text(markdown(results))
    typer.echo(markdown(results))


if __name__ == "__main__":
    typer.run(main)
