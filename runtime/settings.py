"""Runtime configuration: flags > TICKETSMITH_* environment > config file > defaults."""

from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ticketsmith.runtime.options import ExtraBuffers, FlashAttention, LabelSearch, default_threads
from ticketsmith.runtime.schema import SUMMARY_MAX_TOKENS
from ticketsmith.runtime.yaml_config import YamlLayer, load_section, load_with_overrides

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def packaged_config(name: str) -> Path:
    return Path(str(files("ticketsmith.configs").joinpath(name)))


class ReviewThresholds(BaseModel):
    """A ticket needs review when any field's confidence is under its threshold (0 disables a field)."""

    model_config = ConfigDict(extra="forbid")

    summary: Probability = 0.0
    category: Probability = 0.5
    subcategory: Probability = 0.4
    application: Probability = 0.4
    urgency: Probability = 0.4
    impact: Probability = 0.4
    assignment_group: Probability = 0.5


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TICKETSMITH_", env_nested_delimiter="__", extra="forbid")

    model_path: Path | None = Field(None, description="GGUF model; unset: the embedded SmolLM2-135M default")
    lora_path: Path | None = Field(None, description="GGUF LoRA adapter applied over model_path")
    taxonomy_path: Path = Field(default_factory=lambda: packaged_config("taxonomy.yaml"))
    n_ctx: Annotated[int, Field(ge=512, le=131072)] = 4096
    n_threads: Annotated[int, Field(ge=1)] = Field(default_factory=default_threads)
    n_gpu_layers: Annotated[int, Field(ge=-1)] = 0
    flash_attn: FlashAttention = Field(
        "off", description="off: fastest on a CPU (llama.cpp's auto turns it on, 1.6x slower batches); auto for a GPU"
    )
    cpu_extra_buffers: ExtraBuffers = Field(
        "auto",
        description="llama.cpp's AMX and repacked CPU weight layouts. auto: off where llama.cpp reports AMX (its AMX "
        "path segfaults there), on elsewhere; on: both on, even with AMX (unsafe, see docs/cpu.md); off: both off",
    )
    n_ubatch: Annotated[int | None, Field(ge=1)] = Field(
        None,
        description="llama.cpp's physical batch (unset: 512). 1 makes every token's logits independent of how it "
        "was batched (llama.cpp's batched kernels round differently), at the cost of batching's speed",
    )
    max_summary_tokens: Annotated[int, Field(ge=4, le=256)] = SUMMARY_MAX_TOKENS
    summary_one_sentence: bool = Field(
        True, description="end the summary where a second sentence would start (after '.', '!' or '?' and a space)"
    )
    label_search: LabelSearch = Field(
        "exact",
        description="exact: the most probable label, category and subcategory as a pair; "
        "greedy: token by token, as a plain sampler would",
    )
    review_thresholds: ReviewThresholds = Field(default_factory=ReviewThresholds)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, YamlLayer(settings_cls)


RUNTIME_PATH_KEYS = ("model_path", "lora_path", "taxonomy_path")


def load_settings(config_path: Path | None = None, **overrides: Any) -> RuntimeSettings:
    """Settings from flags, the environment and a YAML file (paths in it relative to the file)."""
    return load_with_overrides(RuntimeSettings, config_path, RUNTIME_PATH_KEYS, overrides)


def load_runtime_section(section: dict[str, Any], config_path: Path | None, **overrides: Any) -> RuntimeSettings:
    """The `runtime:` section of a worker YAML, in the same order: flags, environment, the section."""
    base = config_path.parent if config_path is not None else None
    where = f"{config_path} (runtime)" if config_path is not None else "runtime"
    return load_section(RuntimeSettings, section, base, RUNTIME_PATH_KEYS, where, overrides)
