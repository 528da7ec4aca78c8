"""What the label head costs per ticket: the same Triager with and without its head, interleaved.

    python -m bench.head_cost --model RUN_OR_GGUF [--taxonomy T] [--tickets 40] [--rounds 3]

Each round triages the tickets once with the head and once without (alternating which goes first),
so both see the same machine load; the figure is the median over rounds of the per-ticket mean.
The tickets are the samples plus synthetic ones of the model's taxonomy. Also times the head's
scoring alone (features and margins)."""

import json
import statistics
import time
from pathlib import Path
from typing import Annotated

import typer

from ticketsmith.runtime.settings import load_settings
from ticketsmith.runtime.triager import Triager
from ticketsmith.train.synth import generate

REPO = Path(__file__).resolve().parent.parent


def main(
    model: Annotated[Path, typer.Option(help="a run folder or GGUF with a label head")],
    taxonomy: Annotated[
        Path | None, typer.Option(help="its taxonomy (default: the run's, or the packaged one)")
    ] = None,
    tickets: Annotated[int, typer.Option(help="tickets per round")] = 40,
    rounds: Annotated[int, typer.Option(help="rounds (the median is reported)")] = 3,
    threads: Annotated[int, typer.Option(help="CPU threads")] = 2,
    out: Annotated[Path, typer.Option(help="results folder")] = REPO / "bench" / "results",
) -> None:
    triager = Triager(load_settings(model_path=model, taxonomy_path=taxonomy, n_threads=threads))
    head = triager.head
    if head is None:
        raise typer.BadParameter(f"{model} has no label head")
    texts = [t.text for t in generate(triager.taxonomy, tickets, seed=7)]
    triager.triage(texts[0])  # warm-up: the fixed prompt prefix is cached from here on
    means: dict[str, list[float]] = {"with_head": [], "without_head": []}
    for number in range(rounds):
        order = ("with_head", "without_head") if number % 2 == 0 else ("without_head", "with_head")
        for name in order:
            triager.head = head if name == "with_head" else None
            started = time.perf_counter()
            for text in texts:
                triager.triage(text)
            means[name].append((time.perf_counter() - started) / len(texts))
    triager.head = head
    started = time.perf_counter()
    for text in texts:
        head.margins(text)
    scoring = (time.perf_counter() - started) / len(texts)
    medians = {name: statistics.median(values) for name, values in means.items()}
    report = {
        "model": str(model),
        "tickets": len(texts),
        "rounds": rounds,
        "seconds_per_ticket": medians,
        "per_round": means,
        "head_cost": medians["with_head"] / medians["without_head"] - 1,
        "head_scoring_ms": scoring * 1000,
        "vocabulary": len(head.manifest.vocabulary),
        "cpu": triager.engine.cpu.describe(),
    }
    triager.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / "head_cost.json").write_text(json.dumps(report, indent=2))
    typer.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
