"""Do the decoder's shortcuts change answers? Our runtime with greedy label search (so that only the
shortcuts differ: forced tokens appended in batches, the prefix cache, the summary's whole-character
tokens) against plain greedy sampling under the same GBNF grammar by llama.cpp, token by token.

    python -m bench.parity [--tickets 100] [--threads 2]

The summary bounds are set to the grammar's (200 characters, no one-sentence stop), so neither side
is cut shorter. `--model` runs it on a fine-tuned GGUF, whose answers follow the canonical tokens."""

import json
import statistics
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from llama_cpp import Llama
from llama_cpp.llama_grammar import LlamaGrammar

from ticketsmith.runtime.answer_format import FIELD_ORDER
from ticketsmith.runtime.settings import load_settings
from ticketsmith.runtime.triager import Triager
from ticketsmith.train.synth import generate

REPO = Path(__file__).resolve().parent.parent


def plain_greedy(llm: Llama, grammar: LlamaGrammar, prompt: list[int]) -> dict[str, Any] | None:
    response: Any = llm.create_completion(prompt, grammar=grammar, temperature=0, max_tokens=1024)
    try:
        values = json.loads(response["choices"][0]["text"])
    except json.JSONDecodeError:
        return None
    return values if isinstance(values, dict) else None


def main(
    tickets: Annotated[int, typer.Option(help="synthetic tickets (plus the samples)")] = 100,
    threads: Annotated[int, typer.Option()] = 2,
    model: Annotated[Path | None, typer.Option(help="GGUF (default: the embedded model)")] = None,
    out: Annotated[Path, typer.Option()] = REPO / "bench" / "results" / "parity.json",
) -> None:
    ours = Triager(
        load_settings(
            model_path=model,
            n_threads=threads,
            label_search="greedy",
            max_summary_tokens=256,
            summary_one_sentence=False,
        )
    )
    llm = Llama(str(ours.model_path), n_ctx=ours.settings.n_ctx, n_threads=threads, verbose=False)
    grammar = LlamaGrammar.from_string(ours.grammar, verbose=False)
    samples = [json.loads(line)["text"] for line in (REPO / "examples" / "tickets.jsonl").read_text().splitlines()]
    texts = samples + [t.text for t in generate(ours.taxonomy, tickets, seed=7)]
    same: dict[str, list[bool]] = {field: [] for field in FIELD_ORDER}
    for i, text in enumerate(texts):
        _, ticket, _, _ = ours.decode(text)
        prompt, _, _ = ours.prompt_tokens(text)
        reference = plain_greedy(llm, grammar, prompt) or {}
        for field in FIELD_ORDER:
            same[field].append(getattr(ticket, field) == reference.get(field))
        print(f"{i + 1}/{len(texts)} identical={all(same[f][-1] for f in FIELD_ORDER)}", file=sys.stderr)
    report = {
        "model": str(ours.model_path),
        "tickets": len(texts),
        "identical_answers": statistics.fmean(all(same[f][i] for f in FIELD_ORDER) for i in range(len(texts))),
        "identical_labels": statistics.fmean(all(same[f][i] for f in FIELD_ORDER[1:]) for i in range(len(texts))),
        "per_field": {field: statistics.fmean(values) for field, values in same.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    typer.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
