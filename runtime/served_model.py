"""What `--model` names: a GGUF file (with the label head its convert manifest points to, if any) or a
training run folder as `ticketsmith train` left it (its head, and the LLM it was trained on)."""

import json
from dataclasses import dataclass
from pathlib import Path

from ticketsmith.runtime.default_model import default_head_path, embedded_model_path
from ticketsmith.runtime.errors import ModelError
from ticketsmith.runtime.label_head import HEAD_JSON
from ticketsmith.runtime.model_manifest import ModelManifest, manifest_path

RUN_HEAD = "head"  # a run folder's label head
RUN_GGUF = "model.gguf"  # a run folder's converted LLM, if the user put one there
RUN_TAXONOMY = "taxonomy.yaml"
RUN_FILE = "run.json"  # written by `train`: which base model the run started from


@dataclass(frozen=True)
class ServedModel:
    gguf: Path
    head: Path | None  # folder with head.json and head.npz
    taxonomy: Path | None  # the taxonomy the run was trained for, when known
    # The shipped head of the default taxonomy: served only with that taxonomy, left out with another.
    head_is_default: bool = False


def _run_base(folder: Path) -> Path:
    """The GGUF a run folder's LLM part is: its converted model.gguf, else the base it was trained
    from when that is a GGUF, else the embedded default."""
    if (folder / RUN_GGUF).is_file():
        return folder / RUN_GGUF
    run_file = folder / RUN_FILE
    if run_file.is_file():
        try:
            base = json.loads(run_file.read_text(encoding="utf-8")).get("base")
        except (OSError, ValueError) as exc:
            raise ModelError(f"{run_file} is corrupt ({exc}): train the run again") from None
        if isinstance(base, str) and base.endswith(".gguf"):
            return Path(base)
    return embedded_model_path()


def resolve(model: Path | None) -> ServedModel:
    if model is None:
        return ServedModel(embedded_model_path(), default_head_path(), None, head_is_default=True)
    if model.is_dir():
        run_head = model / RUN_HEAD
        if not (run_head / HEAD_JSON).is_file():
            raise ModelError(
                f"{model} is a folder but not a training run with a label head ({run_head / HEAD_JSON} is missing): "
                "run `ticketsmith train --head-only --out FOLDER`, or give a GGUF file"
            )
        taxonomy = model / RUN_TAXONOMY
        return ServedModel(_run_base(model), run_head, taxonomy if taxonomy.is_file() else None)
    manifest_file = manifest_path(model)
    head: Path | None = None
    if manifest_file.is_file():
        try:
            manifest = ModelManifest.model_validate_json(manifest_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelError(f"{manifest_file} is corrupt ({str(exc).splitlines()[0]}): convert again") from None
        if manifest.head is not None:
            head = model.parent / manifest.head
    return ServedModel(model, head, None)
