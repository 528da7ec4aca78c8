"""What the ticket token budget does to latency: the same Triager with the budget its model records
(512 by default) and with none (the ticket cut only where the context ends), interleaved.

    python -m bench.ticket_budget [--model RUN_OR_GGUF] [--tickets 95] [--long 5] [--threads 2]

The tickets are real ones from ../shared/data/it-service-tickets/dev.jsonl where present (else the
samples and synthetic ones), with `--long` long mails among them: a real ticket followed by a
forwarded thread of others, 8 KB to 270 KB. Reports latency p50/p95/p99/max per setting and the
share of tickets cut; writes bench/results/ticket_budget.json."""

import json
import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from ticketsmith.runtime.settings import load_settings
from ticketsmith.runtime.triager import Triager
from ticketsmith.train.synth import generate

REPO = Path(__file__).resolve().parent.parent
SHARED_DEV = REPO.parent / "shared" / "data" / "it-service-tickets" / "dev.jsonl"
LONG_SIZES = (8_000, 32_000, 96_000, 180_000, 270_000)


def ordinary_tickets(n: int, triager: Triager) -> list[str]:
    if SHARED_DEV.is_file():
        lines = SHARED_DEV.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["text"] for line in lines[:n]]
    return [t.text for t in generate(triager.taxonomy, n, seed=5)]


def long_mail(first: str, others: list[str], size: int) -> str:
    """`first`, then a forwarded thread of the other tickets until the mail is `size` characters."""
    parts, length, i = [first], len(first), 0
    while length < size:
        header = f"\n\n-----Original Message-----\nFrom: user{i}@example.com\nSubject: RE: ticket\n\n"
        quoted = header + others[i % len(others)]
        parts.append(quoted)
        length, i = length + len(quoted), i + 1
    return "".join(parts)[:size]


def interleaved(triager: Triager, texts: list[str], budgets: dict[str, int]) -> dict[str, list[float]]:
    """Each ticket under every budget in turn, alternating which goes first, so that both settings
    see the same machine load."""
    seconds: dict[str, list[float]] = {name: [] for name in budgets}
    for i, text in enumerate(texts):
        for name in list(budgets)[:: 1 if i % 2 == 0 else -1]:
            triager.encoder.ticket_tokens = budgets[name]  # the bench's only knob: models record their own
            started = time.perf_counter()
            triager.triage(text)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_s": float(np.percentile(seconds, 50)),
        "p95_s": float(np.percentile(seconds, 95)),
        "p99_s": float(np.percentile(seconds, 99)),
        "max_s": max(seconds),
        "mean_s": statistics.fmean(seconds),
    }


def main(
    model: Annotated[Path | None, typer.Option(help="a run folder or GGUF (default: the embedded model)")] = None,
    taxonomy: Annotated[Path | None, typer.Option(help="its taxonomy")] = None,
    tickets: Annotated[int, typer.Option(help="ordinary tickets")] = 95,
    long: Annotated[int, typer.Option(help="long mails among them")] = 5,
    threads: Annotated[int, typer.Option(help="CPU threads")] = 2,
    out: Annotated[Path, typer.Option(help="results folder")] = REPO / "bench" / "results",
) -> None:
    triager = Triager(load_settings(model_path=model, taxonomy_path=taxonomy, n_threads=threads))
    recorded = triager.encoder.ticket_tokens
    texts = ordinary_tickets(tickets, triager)
    step = max(1, len(texts) // max(1, long))
    for k in range(long):
        texts.insert(k * step, long_mail(texts[k * step], texts, LONG_SIZES[k % len(LONG_SIZES)]))
    triager.triage(texts[-1])  # warm-up: the fixed prompt prefix is cached from here on
    unbounded = triager.text_budget
    report: dict[str, Any] = {
        "model": str(triager.model_path),
        "tickets": len(texts),
        "long_mails": long,
        "threads": threads,
        "cut_share": {},
    }
    budgets = {f"budget_{recorded}": recorded, f"context_{unbounded}": unbounded}
    for name, budget in budgets.items():
        triager.encoder.ticket_tokens = budget
        report["cut_share"][name] = statistics.fmean(triager.encode_ticket(t).truncated for t in texts)
    for name, seconds in interleaved(triager, texts, budgets).items():
        report[name] = summary(seconds)
        typer.echo(f"{name}: {json.dumps(report[name])}", err=True)
    triager.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / "ticket_budget.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    typer.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
