"""Do the decoder's shortcuts change answers? Our runtime with greedy label search (so that only the
shortcuts differ: forced tokens appended in batches, the prefix cache, the summary's whole-character
tokens) against plain greedy decoding under the same GBNF grammar: on the same engine, from a cold
cache, one sampled token per forward pass, each token the most likely one that llama.cpp's grammar
sampler allows.

    python -m bench.parity [--tickets 100] [--threads 2] [--model ft.gguf]

Both sides evaluate the prompt in the same two batches (the fixed prefix, then the ticket), so the
prefix cache is compared exactly. llama.cpp's logits depend on how tokens are batched, so a second
plain run evaluates the ticket's prompt tokens one by one: how often two plain greedy runs that
differ only in batching agree is the floor under which no batching shortcut can be judged.
The summary bounds are set to the grammar's (200 characters, no one-sentence stop)."""

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer

from ticketsmith.runtime.answer_format import FIELD_ORDER
from ticketsmith.runtime.decoder import DecodeStats
from ticketsmith.runtime.grammar_check import GrammarState
from ticketsmith.runtime.settings import load_settings
from ticketsmith.runtime.triager import Triager
from ticketsmith.train.synth import generate

REPO = Path(__file__).resolve().parent.parent
MAX_ANSWER_TOKENS = 512
TOP_CANDIDATES = 64  # checked against the grammar first; the whole vocabulary only when too few pass


@dataclass
class GreedyRun:
    values: dict[str, Any]  # empty when the answer is not a JSON object
    tokens: list[int]
    margins: list[float]  # per step: the chosen token's logit minus the best other allowed one


def best_allowed(state: GrammarState, logits: npt.NDArray[np.float32]) -> tuple[int, float]:
    """The allowed token with the highest logit, and its lead over the next allowed one."""
    order = np.argsort(-logits).astype(np.intc)
    for candidates in (order[:TOP_CANDIDATES], order):
        allowed = candidates[state.allowed_mask(candidates)]
        if len(allowed) >= 2 or len(candidates) == len(order):
            break
    lead = float(logits[allowed[0]] - logits[allowed[1]]) if len(allowed) > 1 else float("inf")
    return int(allowed[0]), lead


def plain_greedy(triager: Triager, text: str, *, ticket_token_by_token: bool) -> GreedyRun:
    decoder, engine = triager.decoder, triager.engine
    prompt, _, _ = triager.prompt_tokens(text)
    fixed = triager.fixed_prefix_length
    stats = DecodeStats()
    decoder.reset()
    if ticket_token_by_token:
        logits = decoder.feed_prompt(prompt[: fixed + 1], fixed, stats)
        for token in prompt[fixed + 1 :]:
            logits = decoder.append([token], stats)
    else:
        logits = decoder.feed_prompt(prompt, fixed, stats)
    state = GrammarState(engine, triager.grammar)
    tokens: list[int] = []
    margins: list[float] = []
    try:
        while len(tokens) < MAX_ANSWER_TOKENS:
            token, margin = best_allowed(state, logits)
            if engine.is_end_of_generation(token):
                break
            state.accept(token)
            tokens.append(token)
            margins.append(margin)
            logits = decoder.append([token], stats)
    finally:
        state.close()
    try:
        values = json.loads(b"".join(engine.token_bytes(t) for t in tokens))
    except (UnicodeDecodeError, json.JSONDecodeError):
        values = {}
    return GreedyRun(values if isinstance(values, dict) else {}, tokens, margins)


@dataclass
class Divergence:
    margin: float  # the plain run's lead of its token over the next allowed one there
    same_text: bool  # both tokens spell the same text (one piece is a prefix of the other): a tokenization


def first_divergence(triager: Triager, ours: list[int], plain: GreedyRun) -> Divergence | None:
    """Where the two token sequences first part (None: one is a prefix of the other)."""
    for step, (a, b) in enumerate(zip(ours, plain.tokens, strict=False)):
        if a != b:
            mine, theirs = triager.engine.token_bytes(a), triager.engine.token_bytes(b)
            same_text = mine.startswith(theirs) or theirs.startswith(mine)
            return Divergence(plain.margins[step], same_text)  # finite: ours is a sentence of the grammar too
    return None


def agreement(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    same = [[a.get(f) == b.get(f) for f in FIELD_ORDER] for a, b in pairs]
    return {
        "identical_answers": statistics.fmean(all(row) for row in same),
        "identical_labels": statistics.fmean(all(row[1:]) for row in same),
        "per_field": {f: statistics.fmean(row[i] for row in same) for i, f in enumerate(FIELD_ORDER)},
    }


def main(
    tickets: Annotated[int, typer.Option(help="synthetic tickets (plus the samples)")] = 100,
    threads: Annotated[int, typer.Option()] = 2,
    model: Annotated[Path | None, typer.Option(help="GGUF (default: the embedded model)")] = None,
    ubatch: Annotated[int | None, typer.Option(help="llama.cpp's physical batch; 1: no batched arithmetic")] = None,
    out: Annotated[Path, typer.Option()] = REPO / "bench" / "results" / "parity.json",
) -> None:
    triager = Triager(
        load_settings(
            model_path=model,
            n_threads=threads,
            n_ubatch=ubatch,
            label_search="greedy",
            max_summary_tokens=256,
            summary_one_sentence=False,
        )
    )
    samples = [json.loads(line)["text"] for line in (REPO / "examples" / "tickets.jsonl").read_text().splitlines()]
    texts = samples + [t.text for t in generate(triager.taxonomy, tickets, seed=7)]
    ours_vs_plain: list[tuple[dict[str, Any], dict[str, Any]]] = []
    plain_vs_plain: list[tuple[dict[str, Any], dict[str, Any]]] = []
    divergences: list[Divergence] = []
    for i, text in enumerate(texts):
        answer, ticket, _, _ = triager.decode(text)  # warm: reuses the prefix cache of the previous ticket
        plain = plain_greedy(triager, text, ticket_token_by_token=False)
        stepped = plain_greedy(triager, text, ticket_token_by_token=True)
        ours = ticket.model_dump(include=set(FIELD_ORDER))
        ours_vs_plain.append((ours, plain.values))
        plain_vs_plain.append((plain.values, stepped.values))
        divergence = first_divergence(triager, answer.answer_tokens, plain) if ours != plain.values else None
        if divergence is not None:
            divergences.append(divergence)
        print(f"{i + 1}/{len(texts)} identical={ours == plain.values} {divergence}", file=sys.stderr)
    spelled = [d.margin for d in divergences if d.same_text]
    chosen = [d.margin for d in divergences if not d.same_text]
    report = {
        "model": str(triager.model_path),
        "tickets": len(texts),
        "n_ubatch": ubatch,
        "ours_vs_plain_greedy": agreement(ours_vs_plain),
        "plain_greedy_vs_itself_with_ticket_token_by_token": agreement(plain_vs_plain),
        "different_answers_by_first_divergence": {
            "plain_spells_the_same_text_in_other_tokens": len(spelled),
            "different_text": len(chosen),
            "plain_margin_there_spelled": sorted(round(m, 3) for m in spelled),
            "plain_margin_there_different_text": sorted(round(m, 3) for m in chosen),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    typer.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
