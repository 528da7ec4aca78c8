"""What a converted model was trained for, and the runtime's refusal of a model trained for another setup.

`ticketsmith convert` writes a manifest JSON beside each GGUF (`model.gguf.manifest.json`) and the
fields that decide compatibility into the GGUF itself (keys `ticketsmith.*`). A model trained on
another taxonomy would emit labels the grammar forbids (and give meaningless confidences); one
trained with another prompt version would be served a prompt it never saw. A GGUF without these keys
(a plain, untrained model such as the embedded default) is accepted as it is."""

from pathlib import Path

from pydantic import BaseModel

from ticketsmith.runtime.errors import ModelError

GGUF_KEYS = {
    "taxonomy_fingerprint": "ticketsmith.taxonomy_fingerprint",
    "prompt_version": "ticketsmith.prompt_version",
    "ticketsmith_version": "ticketsmith.version",
    "quant": "ticketsmith.quant",
    "ticket_tokens": "ticketsmith.ticket_tokens",
}


class ModelManifest(BaseModel):
    base_model: str
    adapter: str
    quant: str
    kind: str  # "model" (merged) or "lora" (an adapter GGUF applied over base_model)
    taxonomy_fingerprint: str
    prompt_version: str
    ticket_tokens: int | None = None  # the ticket token budget it was trained with; None: the default
    sha256: str
    created: str
    ticketsmith_version: str
    parity: dict[str, float] | None = None
    head: str | None = None  # the label head's folder, beside the GGUF
    head_sha256: str | None = None  # of its head.npz


def manifest_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".manifest.json")


def check_compatible(
    where: Path,
    taxonomy_fingerprint: str | None,
    prompt_version: str | None,
    expected_taxonomy: str,
    known_prompts: tuple[str, ...],
) -> None:
    """Refuse a model whose recorded taxonomy differs from the runtime's, or whose prompt version
    this ticketsmith cannot build."""
    if taxonomy_fingerprint is not None and taxonomy_fingerprint != expected_taxonomy:
        raise ModelError(
            f"{where} was trained for taxonomy {taxonomy_fingerprint}, but the configured taxonomy is "
            f"{expected_taxonomy}: serve it with the taxonomy.yaml it was trained with (saved in the adapter "
            "folder), or retrain"
        )
    if prompt_version is not None and prompt_version not in known_prompts:
        raise ModelError(
            f"{where} was trained with prompt format {prompt_version}, but this ticketsmith builds "
            f"{', '.join(known_prompts)}: retrain it, or use the ticketsmith version it was trained with"
        )
