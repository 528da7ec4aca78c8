"""Do the decoder's shortcuts change answers? Our runtime with greedy label search and no summary
bounds (so that only the shortcuts differ: forced tokens appended in batches, the prefix cache, trie
batches) against plain greedy decoding on the same engine, from a cold cache, one token per forward
pass (`bench.plain_greedy`):

    python -m bench.parity [--tickets 100] [--threads 2] [--model ft.gguf] [--ubatch 1]

The yardstick is greedy decoding under the token-level grammar that the decoder and training share
(keys and labels in their canonical tokens, the summary as llama.cpp's grammar sampler allows it).
Against it every difference is a shortcut's or llama.cpp's arithmetic's: its logits depend on how
tokens are batched, so two controls separate the two. `--ubatch 1` makes llama.cpp compute every
token alone (any difference left is the decoder's own), and a second yardstick run that evaluates
the ticket's prompt tokens one by one shows how often greedy decoding agrees with itself when only
the batching differs. The report also gives the default exact label search against the yardstick
(it picks the most probable label, so it may differ by design), and plain greedy under the GBNF
sampler alone, which may spell keys and labels in other tokens than the canonical ones: where its
answer differs from ours, the report says whether it had left the canonical tokens first."""

import json
import statistics
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bench.plain_greedy import GreedyRun, canonical_greedy, plain_greedy
from ticketsmith.runtime.answer_format import FULL_LAYOUT
from ticketsmith.runtime.settings import load_settings
from ticketsmith.runtime.triager import Triager
from ticketsmith.train.synth import generate

REPO = Path(__file__).resolve().parent.parent


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first index where the sequences differ (None: one is a prefix of the other)."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)


def canonical_tokens(triager: Triager, plain: GreedyRun) -> list[int]:
    """The plain answer spelled as the decoder (and training) spells it: the plain run's own summary
    tokens, and the scaffolding and labels in their canonical tokens. Empty for an invalid answer."""
    if not set(FULL_LAYOUT.fields) <= plain.values.keys():
        return []
    engine = triager.engine
    opening, summary, *rest = FULL_LAYOUT.answer_segments({f: str(plain.values[f]) for f in FULL_LAYOUT.fields})
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
    same = [[a.get(f) == b.get(f) for f in FULL_LAYOUT.fields] for a, b in pairs]
    return {
        "identical_answers": statistics.fmean(all(row) for row in same),
        "identical_labels": statistics.fmean(all(row[1:]) for row in same),
        "per_field": {f: statistics.fmean(row[i] for row in same) for i, f in enumerate(FULL_LAYOUT.fields)},
    }


def token_parity(pairs: list[tuple[list[int], GreedyRun]]) -> float:
    return statistics.fmean(ours == run.tokens for ours, run in pairs)


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
    Pairs = list[tuple[dict[str, Any], dict[str, Any]]]
    ours_vs_canonical: Pairs = []
    canonical_vs_itself: Pairs = []
    exact_vs_canonical: Pairs = []
    ours_vs_plain: Pairs = []
    canonical_pairs: Pairs = []  # where plain greedy under the GBNF alone kept to the canonical tokens
    tokens_vs_canonical: list[tuple[list[int], GreedyRun]] = []
    parted_at: list[float] = []  # the yardstick's lead where our tokens part from it
    margins: dict[str, list[float]] = {"plain_left_canonical_tokens": [], "same_tokens_other_choice": []}
    for i, text in enumerate(texts):
        read = triager.read_ticket(text)
        answer, ticket = read.answer, read.ticket  # warm: reuses the prefix cache of the previous run
        ours = ticket.model_dump(include=set(FULL_LAYOUT.fields))
        triager.decoder.label_search = "exact"
        exact = triager.read_ticket(text).ticket.model_dump(include=set(FULL_LAYOUT.fields))
        triager.decoder.label_search = "greedy"
        canonical = canonical_greedy(triager, text)
        # with n_ubatch 1 every token is already evaluated alone: the second run could not differ
        stepped = canonical if ubatch == 1 else canonical_greedy(triager, text, ticket_token_by_token=True, cold=False)
        plain = plain_greedy(triager, text, cold=False)
        ours_vs_canonical.append((ours, canonical.values))
        tokens_vs_canonical.append((answer.answer_tokens, canonical))
        canonical_vs_itself.append((canonical.values, stepped.values))
        exact_vs_canonical.append((exact, canonical.values))
        ours_vs_plain.append((ours, plain.values))
        where = first_difference(answer.answer_tokens, canonical.tokens)
        if where is not None:
            parted_at.append(round(canonical.margins[where], 3))
        if canonical_tokens(triager, plain) == plain.tokens:
            canonical_pairs.append((ours, plain.values))
        where = first_difference(answer.answer_tokens, plain.tokens)
        cause = ""
        if ours != plain.values and where is not None:
            left = first_difference(canonical_tokens(triager, plain), plain.tokens)
            left_first = left is not None and left <= where
            cause = "plain_left_canonical_tokens" if left_first else "same_tokens_other_choice"
            margins[cause].append(round(plain.margins[where], 3))  # finite: ours is a sentence of the grammar
        same = answer.answer_tokens == canonical.tokens
        print(f"{i + 1}/{len(texts)} tokens as the yardstick's: {same}; plain GBNF: {cause or 'same'}", file=sys.stderr)
    report = {
        "model": str(triager.model_path),
        "tickets": len(texts),
        "n_ubatch": ubatch,
        "ours_vs_canonical_greedy": {
            "identical_tokens": token_parity(tokens_vs_canonical),
            **agreement(ours_vs_canonical),
            "yardstick_lead_where_tokens_part": sorted(parted_at),
        },
        "canonical_greedy_vs_itself_with_ticket_token_by_token": agreement(canonical_vs_itself),
        "exact_label_search_vs_canonical_greedy": agreement(exact_vs_canonical),
        "gbnf_sampler_alone": {
            "ours_vs_plain_greedy": agreement(ours_vs_plain),
            "plain_kept_to_canonical_tokens": len(canonical_pairs) / len(texts),
            "ours_vs_plain_greedy_where_it_kept_to_them": agreement(canonical_pairs) if canonical_pairs else None,
            "different_answers_by_cause": {cause: len(values) for cause, values in margins.items()},
            "plain_margin_where_they_part": {cause: sorted(values) for cause, values in margins.items()},
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    typer.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
