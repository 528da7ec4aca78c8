"""Do the decoder's shortcuts change answers? Our runtime with greedy label search and no summary
bounds (so that only the shortcuts differ: forced tokens appended in batches, the prefix cache,
labels scored in their canonical tokens) against plain greedy decoding under the same GBNF grammar:
on the same engine, from a cold cache, one token per forward pass, each the most likely token that
llama.cpp's grammar sampler allows.

    python -m bench.parity [--tickets 100] [--threads 2] [--model ft.gguf] [--ubatch 1]

Both sides evaluate the prompt in the same two batches (the fixed prefix, then the ticket).
llama.cpp's logits depend on how tokens are batched, so two more figures separate our logic from
that arithmetic: a second plain run that evaluates the ticket's prompt tokens one by one (how often
plain greedy agrees with itself when only the batching differs), and `--ubatch 1`, which makes
llama.cpp compute every token alone, so that any difference left is the decoder's own.
Where the answers differ, the report says why: the plain run spelled a key or label in other tokens
than the canonical ones (which the decoder and training use), or it chose differently with the same
tokens before; with the plain run's lead of its token over the next allowed one there."""

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer

from ticketsmith.runtime.answer_format import FIELD_ORDER, answer_segments
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


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first index where the sequences differ (None: one is a prefix of the other)."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)


def canonical_tokens(triager: Triager, plain: GreedyRun) -> list[int]:
    """The plain answer spelled as the decoder (and training) spells it: the plain run's own summary
    tokens, and the scaffolding and labels in their canonical tokens. Empty for an invalid answer."""
    if not set(FIELD_ORDER) <= plain.values.keys():
        return []
    engine = triager.engine
    opening, summary, *rest = answer_segments({f: str(plain.values[f]) for f in FIELD_ORDER})
    start, end = len(opening.encode()), len(opening.encode()) + len(summary.encode())
    sampled: list[int] = []
    offset = 0
    for token in plain.tokens:
        piece = engine.token_bytes(token)
        if start <= offset and offset + len(piece) <= end:
            sampled.append(token)
        offset += len(piece)
    covered = sum(len(engine.token_bytes(t)) for t in sampled)
    tail = summary.encode()[covered:].decode("utf-8", errors="replace")  # a closing token's summary characters
    tokens = engine.tokenize(opening) + sampled + (engine.tokenize(tail) if tail else [])
    return tokens + [t for segment in rest for t in engine.tokenize(segment)]


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
    margins: dict[str, list[float]] = {"plain_left_canonical_tokens": [], "same_tokens_other_choice": []}
    canonical_pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []  # where plain kept to canonical tokens
    for i, text in enumerate(texts):
        answer, ticket, _, _ = triager.decode(text)  # warm: reuses the prefix cache of the previous ticket
        plain = plain_greedy(triager, text, ticket_token_by_token=False)
        # with n_ubatch 1 every token is already evaluated alone: the second plain run could not differ
        stepped = plain if ubatch == 1 else plain_greedy(triager, text, ticket_token_by_token=True)
        ours = ticket.model_dump(include=set(FIELD_ORDER))
        ours_vs_plain.append((ours, plain.values))
        plain_vs_plain.append((plain.values, stepped.values))
        if canonical_tokens(triager, plain) == plain.tokens:
            canonical_pairs.append((ours, plain.values))
        where = first_difference(answer.answer_tokens, plain.tokens)
        cause = ""
        if ours != plain.values and where is not None:
            left = first_difference(canonical_tokens(triager, plain), plain.tokens)
            left_first = left is not None and left <= where
            cause = "plain_left_canonical_tokens" if left_first else "same_tokens_other_choice"
            margins[cause].append(round(plain.margins[where], 3))  # finite: ours is a sentence of the grammar
        print(f"{i + 1}/{len(texts)} identical={ours == plain.values} {cause}", file=sys.stderr)
    report = {
        "model": str(triager.model_path),
        "tickets": len(texts),
        "n_ubatch": ubatch,
        "ours_vs_plain_greedy": agreement(ours_vs_plain),
        "plain_greedy_vs_itself_with_ticket_token_by_token": agreement(plain_vs_plain),
        "plain_kept_to_canonical_tokens": len(canonical_pairs) / len(texts),
        "ours_vs_plain_greedy_where_it_kept_to_them": agreement(canonical_pairs) if canonical_pairs else None,
        "different_answers_by_cause": {cause: len(values) for cause, values in margins.items()},
        "plain_margin_where_they_part": {cause: sorted(values) for cause, values in margins.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    typer.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
