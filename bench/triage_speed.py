"""Our runtime against the plain llama-cpp-python reference, side by side in one process.

    python -m bench.triage_speed [--synthetic 200] [--threads 2] [--model PATH] [--out bench/results]

Same model, threads, messages and tickets (the sample tickets plus labelled synthetic ones), run
alternately after a warm-up. Reports latency p50/p95/p99, tickets/s, forward passes and sampled tokens
per ticket, the speed ratio, label agreement, accuracy on the labelled tickets, the sampling cost
of our summary constraint, and peak memory; writes JSON and markdown."""

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, cast

import numpy as np
import typer

from bench.memory import measure
from bench.reference import ReferenceAnswer, ReferenceTriager
from ticketsmith.runtime.decoder import DecodeStats
from ticketsmith.runtime.options import ExtraBuffers
from ticketsmith.runtime.schema import Ticket
from ticketsmith.runtime.settings import load_settings
from ticketsmith.runtime.taxonomy import LABEL_FIELDS
from ticketsmith.runtime.triager import Triager
from ticketsmith.train.synth import generate

REPO = Path(__file__).resolve().parent.parent
FIELDS = ("summary", *LABEL_FIELDS)


def load_tickets(synthetic: int, triager: Triager) -> list[dict[str, Any]]:
    samples = [json.loads(line) for line in (REPO / "examples" / "tickets.jsonl").read_text().splitlines() if line]
    labelled = [t.model_dump() for t in generate(triager.taxonomy, synthetic, seed=2026)]
    return samples + labelled


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def valid_reference(answer: ReferenceAnswer, triager: Triager) -> bool:
    if answer.values is None:
        return False
    try:
        Ticket.model_validate(answer.values, context={"taxonomy": triager.taxonomy})
    except ValueError:
        return False
    return True


def sampling_rates(triager: Triager, texts: list[str], n_tokens: int) -> dict[str, float]:
    """Greedy tokens/s on the same prompts and length, without and with the summary constraint."""
    decoder = triager.decoder
    rates = {}
    for name, mask in (("unconstrained", None), ("summary_constraint", decoder.content_mask)):
        generated, elapsed = 0, 0.0
        for text in texts:
            prompt = triager.encode_ticket(text).tokens
            stats = DecodeStats()
            logits = decoder.feed_prompt(prompt, triager.fixed_prefix_length, stats)
            started = time.perf_counter()
            for _ in range(n_tokens):
                token = int(np.argmax(logits if mask is None else np.where(mask, logits, -np.inf)))
                logits = decoder.append([token], stats)
            elapsed += time.perf_counter() - started
            generated += n_tokens
        decoder.reset()
        rates[name] = generated / elapsed
    return rates


def run(
    synthetic: int, threads: int, model: Path | None, out: Path, extra_buffers: ExtraBuffers, taxonomy: Path | None
) -> dict[str, Any]:
    settings = load_settings(
        model_path=model, taxonomy_path=taxonomy, n_threads=threads, cpu_extra_buffers=extra_buffers
    )
    ours = Triager(settings)
    reference = ReferenceTriager(ours.model_path, ours.taxonomy, ours.settings.n_ctx, threads, ours.engine.cpu)
    tickets = load_tickets(synthetic, ours)
    for warm in tickets[:2]:
        ours.triage(warm["text"])
        reference.triage(warm["text"])
    rows = []
    for i, ticket in enumerate(tickets):
        timings: dict[str, float] = {}
        for system in ("reference", "ours") if i % 2 == 0 else ("ours", "reference"):
            started = time.perf_counter()
            if system == "ours":
                read = ours.read_ticket(ticket["text"])
                answer, parsed = read.answer, read.ticket
            else:
                ref = reference.triage(ticket["text"])
            timings[system] = time.perf_counter() - started
        ours_values = {**parsed.model_dump(), "summary": parsed.summary.strip()}
        rows.append({"ticket": ticket, "timings": timings, "ours": ours_values, "ours_stats": answer.stats, "ref": ref})
        print(f"{i + 1}/{len(tickets)} ref {timings['reference']:.2f}s ours {timings['ours']:.2f}s", file=sys.stderr)
    report = summarize(rows, ours)
    report["settings"] = {
        "threads": threads,
        "model": str(ours.model_path),
        "tickets": len(tickets),
        "labelled": synthetic,
        "n_ctx": ours.settings.n_ctx,
        "max_summary_tokens": ours.settings.max_summary_tokens,
        "summary_one_sentence": ours.settings.summary_one_sentence,
        "flash_attn": ours.settings.flash_attn,
        "prompt_version": ours.prompt_version,
        "cpu": ours.engine.cpu.describe(),
    }
    report["sampling_tokens_per_s"] = sampling_rates(ours, [t["text"] for t in tickets[:10]], n_tokens=32)
    rates = report["sampling_tokens_per_s"]
    report["summary_constraint_cost"] = 1 - rates["summary_constraint"] / rates["unconstrained"]
    ours.close()
    report["peak_rss_mib"] = {str(ours.model_path): measure(model, threads, taxonomy)["peak_rss_mib"]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "triage_speed.json").write_text(json.dumps(report, indent=2))
    (out / "triage_speed.md").write_text(markdown(report))
    return report


def summarize(rows: list[dict[str, Any]], ours: Triager) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for system in ("reference", "ours"):
        latencies = [r["timings"][system] for r in rows]
        if system == "ours":
            passes = [r["ours_stats"].forward_passes for r in rows]
            sampled = [r["ours_stats"].sampled_tokens for r in rows]
        else:
            passes = [1 + r["ref"].completion_tokens for r in rows]
            sampled = [r["ref"].completion_tokens for r in rows]
        report[system] = {
            "latency_p50_s": percentile(latencies, 50),
            "latency_p95_s": percentile(latencies, 95),
            "latency_p99_s": percentile(latencies, 99),
            "latency_mean_s": statistics.fmean(latencies),
            "tickets_per_s": len(rows) / sum(latencies),
            "forward_passes_per_ticket": statistics.fmean(passes),
            "sampled_tokens_per_ticket": statistics.fmean(sampled),
        }
    report["rival_category"] = {  # how often our decoder scored a second category, and kept it
        "scored_share": statistics.fmean(r["ours_stats"].rival_categories_scored for r in rows),
        "chosen_share": statistics.fmean(r["ours_stats"].rival_categories_chosen for r in rows),
    }
    report["speedup_mean_latency"] = report["reference"]["latency_mean_s"] / report["ours"]["latency_mean_s"]
    report["speedup_p50"] = report["reference"]["latency_p50_s"] / report["ours"]["latency_p50_s"]
    reference_valid = {id(r): valid_reference(r["ref"], ours) for r in rows}
    report["reference_valid_rate"] = statistics.fmean(reference_valid.values())
    report["agreement"] = {
        field: statistics.fmean((r["ref"].values or {}).get(field) == r["ours"][field] for r in rows)
        for field in LABEL_FIELDS
    }
    labelled = [r for r in rows if "category" in r["ticket"]]
    answers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "reference": lambda r: r["ref"].values or {},
        "ours": lambda r: r["ours"],
        # an answer that breaks the schema (e.g. a subcategory of another category) is wrong in every field
        "reference_valid_answers_only": lambda r: (r["ref"].values or {}) if reference_valid[id(r)] else {},
    }
    report["accuracy"] = (
        {
            system: {
                field: statistics.fmean(answer(r).get(field) == r["ticket"][field] for r in labelled)
                for field in LABEL_FIELDS
            }
            for system, answer in answers.items()
        }
        if labelled
        else {}
    )
    return report


def markdown(report: dict[str, Any]) -> str:
    ref, ours = report["reference"], report["ours"]
    lines = [
        "# Triage speed: our runtime vs plain llama-cpp-python JSON-schema call",
        "",
        f"Settings: {json.dumps(report['settings'])}",
        "",
        "| | reference | ours |",
        "|---|---|---|",
    ]
    for key in ref:
        lines.append(f"| {key} | {ref[key]:.3f} | {ours[key]:.3f} |")
    lines += [
        "",
        f"Speed-up (mean latency): **{report['speedup_mean_latency']:.2f}x**; p50: {report['speedup_p50']:.2f}x",
        f"Reference answers that validate (labels from the taxonomy, subcategory of its category): "
        f"{report['reference_valid_rate']:.1%}",
        f"Ours scored a rival category on {report['rival_category']['scored_share']:.1%} of tickets "
        f"and kept it on {report['rival_category']['chosen_share']:.1%}",
        "",
        "| field | agreement | accuracy reference | accuracy reference, valid answers only | accuracy ours |",
        "|---|---|---|---|---|",
    ]
    acc = report["accuracy"]
    for field in LABEL_FIELDS:
        cells = [
            f"{acc[system][field]:.1%}" if acc else "-"
            for system in ("reference", "reference_valid_answers_only", "ours")
        ]
        lines.append(f"| {field} | {report['agreement'][field]:.1%} | " + " | ".join(cells) + " |")
    rates = report["sampling_tokens_per_s"]
    lines += [
        "",
        f"Greedy sampling, 32 tokens on the same prompts: {rates['unconstrained']:.1f} tokens/s unconstrained, "
        f"{rates['summary_constraint']:.1f} tokens/s under our summary constraint "
        f"(cost {report['summary_constraint_cost']:.1%}).",
        "",
        "Peak RSS of the runtime alone: "
        + ", ".join(f"{model}: {mib:.0f} MiB" for model, mib in report["peak_rss_mib"].items()),
        "",
    ]
    return "\n".join(lines)


def main(
    synthetic: Annotated[int, typer.Option(help="labelled synthetic tickets added to the samples")] = 200,
    threads: Annotated[int, typer.Option(help="CPU threads for both")] = 2,
    model: Annotated[Path | None, typer.Option(help="GGUF (default: the embedded model)")] = None,
    out: Annotated[Path, typer.Option(help="results folder")] = REPO / "bench" / "results",
    extra_buffers: Annotated[str, typer.Option(help="cpu_extra_buffers for both: auto, on or off")] = "auto",
    taxonomy: Annotated[Path | None, typer.Option(help="the model's taxonomy (default: the packaged one)")] = None,
) -> None:
    report = run(synthetic, threads, model, out, cast(ExtraBuffers, extra_buffers), taxonomy)
    typer.echo(markdown(report))


if __name__ == "__main__":
    typer.run(main)
