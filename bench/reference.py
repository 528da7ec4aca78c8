"""The plain reference a user would write: llama-cpp-python's create_chat_completion with the JSON
schema as response format, temperature 0, on the same model, threads and messages as our runtime."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_cpp import Llama

from ticketsmith.runtime.answer_format import FULL_LAYOUT
from ticketsmith.runtime.cpu_backend import CpuBackend, default_model_params
from ticketsmith.runtime.prompt import system_text, user_text
from ticketsmith.runtime.schema import result_json_schema
from ticketsmith.runtime.taxonomy import Taxonomy


@dataclass
class ReferenceAnswer:
    values: dict[str, Any] | None  # None: the output was not a JSON object
    completion_tokens: int
    prompt_tokens: int


class ReferenceTriager:
    def __init__(self, model_path: Path, taxonomy: Taxonomy, n_ctx: int, n_threads: int, cpu: CpuBackend) -> None:
        self.taxonomy = taxonomy
        # the runtime's weight layouts (runtime/cpu_backend): a like-for-like speed ratio, and no AMX crash
        with default_model_params(cpu):
            self.llm = Llama(str(model_path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
        full = result_json_schema(taxonomy)
        self.schema = {
            "type": "object",
            "properties": {field: full["properties"][field] for field in FULL_LAYOUT.fields},
            "required": list(FULL_LAYOUT.fields),
        }

    def triage(self, text: str) -> ReferenceAnswer:
        messages = [
            {"role": "system", "content": system_text(self.taxonomy)},
            {"role": "user", "content": user_text(text)},
        ]
        response: Any = self.llm.create_chat_completion(
            messages,  # type: ignore[arg-type]
            response_format={"type": "json_object", "schema": self.schema},
            temperature=0,
            max_tokens=512,
        )
        content = response["choices"][0]["message"]["content"] or ""
        try:
            values = json.loads(content)
        except json.JSONDecodeError:
            values = None
        usage = response["usage"]
        return ReferenceAnswer(
            values if isinstance(values, dict) else None, usage["completion_tokens"], usage["prompt_tokens"]
        )
