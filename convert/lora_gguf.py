"""Export a PEFT LoRA adapter as a llama.cpp GGUF LoRA (a few MB to ship instead of a whole model).

Tensor names follow llama.cpp's converter (`blk.N.attn_q.weight.lora_a` / `.lora_b`), found with
the converter's own name map for the base's architecture. Architectures whose converter permutes
the query and key rows for RoPE (llama and its kin) get the same permutation on `lora_b`, which is
what multiplies into those rows; `lora_a` acts on the input side and stays as it is."""

import json
from pathlib import Path

import numpy as np

from ticketsmith.runtime.errors import ConfigError

PEFT_PREFIX = "base_model.model."


def export_lora_gguf(adapter_dir: Path, hf_base: Path, out: Path, metadata: dict[str, str]) -> None:
    import gguf
    from conversion import get_model_class
    from conversion.llama import LlamaModel
    from safetensors.torch import load_file

    config = json.loads((hf_base / "config.json").read_text(encoding="utf-8"))
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    architecture = config["architectures"][0]
    try:
        model_class = get_model_class(architecture)
    except (KeyError, ImportError, ValueError):
        raise ConfigError(f"llama.cpp's converter does not know the architecture {architecture}") from None
    permute = issubclass(model_class, LlamaModel) and model_class.undo_permute
    n_head = config["num_attention_heads"]
    n_kv_head = config.get("num_key_value_heads", n_head)
    arch = gguf.MODEL_ARCH_NAMES[model_class.model_arch]
    names = gguf.get_tensor_name_map(model_class.model_arch, config["num_hidden_layers"])
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(adapter_config["lora_alpha"]))
    for key, value in metadata.items():
        writer.add_string(key, value)
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    for key in sorted(tensors):
        module, _, part = key.removeprefix(PEFT_PREFIX).rpartition(".lora_")
        if part not in ("A.weight", "B.weight"):
            raise ConfigError(f"{adapter_dir}: unexpected tensor {key} (only LoRA A/B matrices can be exported)")
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise ConfigError(f"{adapter_dir}: no llama.cpp tensor for {module}")
        data = tensors[key].float()
        if part == "B.weight" and permute and module.endswith(("q_proj", "k_proj")):
            data = LlamaModel.permute(data, n_head, n_head if module.endswith("q_proj") else n_kv_head)
        suffix = ".lora_a" if part == "A.weight" else ".lora_b"
        writer.add_tensor(target + suffix, np.ascontiguousarray(data.numpy(), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
