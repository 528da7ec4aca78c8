"""What `ticketsmith convert` is asked to do, and the checks that need no training stack: a mistyped
adapter path, quant type or output name fails in a second, before torch and llama.cpp are imported."""

from pathlib import Path

from pydantic import BaseModel, Field

from ticketsmith.runtime.errors import ConfigError

# The quant types `convert` writes, with the output's size relative to the f16 file (with margin: used to
# refuse a conversion the disk cannot hold). convert/quantize.py maps the same names to llama.cpp's types.
QUANT_SIZE_FACTOR = {"Q4_K_M": 0.4, "Q5_K_M": 0.45, "Q8_0": 0.6, "F16": 1.05}
LORA_QUANT = "LORA-F32"  # what the manifest records for an adapter written alone as a GGUF LoRA


def check_quant_type(quant: str) -> str:
    """The quant type's canonical name; an unknown one is a configuration error."""
    upper = quant.upper()
    if upper not in QUANT_SIZE_FACTOR:
        raise ConfigError(f"unknown quant type {quant!r}; choose one of {', '.join(QUANT_SIZE_FACTOR)}")
    return upper


class ConvertRequest(BaseModel):
    adapter: Path
    out: Path
    base: Path | None = None
    quant: str = "Q4_K_M"
    lora_gguf: bool = False
    verify: Path | None = None
    verify_limit: int | None = None
    min_agreement: float = Field(0.95, ge=0, le=1)

    def output_quant(self) -> str:
        """The quant type the output will carry, after checking the request's cheap preconditions."""
        quant = LORA_QUANT if self.lora_gguf else check_quant_type(self.quant)
        if not self.adapter.is_dir():
            raise ConfigError(f"adapter folder not found: {self.adapter}")
        if self.verify is not None and not self.verify.is_file():
            raise ConfigError(f"file not found: {self.verify}")
        if self.out.suffix != ".gguf":
            raise ConfigError(f"{self.out}: the output must be a .gguf file")
        return quant
