"""Merge a LoRA adapter into its base in floating point and save a Hugging Face folder for the converter.

The base is always loaded unquantized (never merged onto a 4-bit base, a known cause of degraded
merged models), merged in float32 and saved in float16. The tokenizer saved with the adapter (with
the chat template the model was trained on) goes with it, and the end-of-turn token the training
targets ended with becomes the generation config's EOS, so the GGUF carries both."""

from pathlib import Path

from ticketsmith.runtime.errors import ConfigError, ModelError
from ticketsmith.train.base_model import file_sha256, go_offline, resolve_base
from ticketsmith.train.finetune import AdapterMetadata, read_adapter_metadata


def check_adapter(adapter_dir: Path) -> AdapterMetadata:
    """The adapter's metadata, after checking that its files are there and readable."""
    if not adapter_dir.is_dir():
        raise ConfigError(f"adapter folder not found: {adapter_dir}")
    metadata = read_adapter_metadata(adapter_dir)
    for name in ("adapter_config.json", "adapter_model.safetensors", "taxonomy.yaml", "tokenizer_config.json"):
        if not (adapter_dir / name).is_file():
            raise ConfigError(f"{adapter_dir}: incomplete adapter, {name} is missing")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as handle:
            handle.keys()
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"{adapter_dir}: corrupt adapter_model.safetensors ({exc})") from None
    return metadata


def resolve_adapter_base(metadata: AdapterMetadata, base: Path | None) -> tuple[Path, Path]:
    """(the base file or folder, its HF folder); a GGUF base must be the very file trained on."""
    source = base or Path(metadata.base)
    if base is None and not source.exists():
        raise ConfigError(f"the adapter's base {source} is not here; give it with --base")
    if metadata.base_sha256 is not None and source.is_file() and file_sha256(source) != metadata.base_sha256:
        raise ConfigError(f"{source} is not the base this adapter was trained on (sha256 differs)")
    return resolve_base(source)


def merge_adapter(adapter_dir: Path, hf_base: Path, out_dir: Path) -> None:
    go_offline()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(hf_base, dtype=torch.float32)
    try:
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    except (RuntimeError, ValueError, KeyError) as exc:  # shape or module mismatch: another base
        raise ConfigError(f"the adapter in {adapter_dir} does not fit the base {hf_base}: {exc}") from None
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    if not tokenizer.chat_template:
        raise ModelError(f"{adapter_dir}: the tokenizer has no chat template; the GGUF would be served wrongly")
    merged.generation_config.eos_token_id = tokenizer.eos_token_id
    merged.config.eos_token_id = tokenizer.eos_token_id
    merged.to(torch.float16).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
