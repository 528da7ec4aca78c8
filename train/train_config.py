"""Fine-tuning configuration: a YAML file and command-line flags, validated by pydantic."""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.prompt import TICKET_TOKENS
from ticketsmith.runtime.schema import SUMMARY_MAX_TOKENS
from ticketsmith.runtime.settings import packaged_config
from ticketsmith.runtime.yaml_config import load_with_overrides

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: Path | None = Field(None, description="HF model folder or GGUF file; unset: the embedded SmolLM2 GGUF")
    taxonomy_path: Path = Field(default_factory=lambda: packaged_config("taxonomy.yaml"))
    train_data: Path
    dev_data: Path | None = None
    output_dir: Path
    lora_r: Annotated[int, Field(ge=1, le=512)] = 16
    lora_alpha: Annotated[int, Field(gt=0)] = 32
    lora_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.05
    lora_targets: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS), min_length=1)
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 2e-4
    epochs: Annotated[float, Field(gt=0)] = 1.0
    max_steps: Annotated[int, Field(ge=-1)] = -1
    batch_size: Annotated[int, Field(ge=1)] = 1
    grad_accum: Annotated[int, Field(ge=1)] = 8
    max_length: Annotated[int, Field(ge=128)] = 2048
    ticket_tokens: Annotated[int, Field(ge=64)] = Field(
        TICKET_TOKENS,
        description="the ticket token budget: a longer ticket keeps its start and end; recorded in the model and "
        "applied alike by the label head and the runtime",
    )
    max_summary_tokens: Annotated[int, Field(ge=4, le=256)] = SUMMARY_MAX_TOKENS
    max_examples: Annotated[int, Field(ge=1)] | None = None
    prompt: Literal["compact", "full"] = Field(
        "compact",
        description="compact: one instruction, no label listing (the model learns the labels; 3x+ fewer tokens "
        "per ticket); full: the label listing of untrained models",
    )
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    quantization: Literal["auto", "4bit", "none"] = Field(
        "auto", description="auto: QLoRA (4-bit NF4) on a CUDA GPU, plain LoRA on a CPU"
    )
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: on with a GPU (memory is the limit there), off on a CPU (it costs ~30% time)"
    )
    save_steps: Annotated[int, Field(ge=1)] = 50
    logging_steps: Annotated[int, Field(ge=1)] = 5
    seed: int = 42


PATH_KEYS = ("base", "taxonomy_path", "train_data", "dev_data", "output_dir")


def load_train_config(config_path: Path | None = None, **overrides: Any) -> TrainConfig:
    return load_with_overrides(TrainConfig, config_path, PATH_KEYS, overrides)


def check_train_inputs(config: TrainConfig) -> None:
    """Refuse a missing input file now, before torch and scikit-learn take seconds to import."""
    files = {"--data": config.train_data, "--dev": config.dev_data, "--taxonomy": config.taxonomy_path}
    for flag, path in files.items():
        if path is not None and not path.is_file():
            raise ConfigError(f"{flag}: file not found: {path}")
    if config.base is not None and not config.base.exists():
        raise ConfigError(f"--base: not found: {config.base}")
