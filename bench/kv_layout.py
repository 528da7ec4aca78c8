"""Does where a token's KV sits in llama.cpp's cache move its logits? A reproduction without the decoder.

    python -m bench.kv_layout [--shifts 64] [--flash-attn off|on] [--out bench/results]

The same context is evaluated one token per pass (n_ubatch 1) in one sequence, after `shift` cells
were taken by another sequence that the context cannot see: the arithmetic is the same, only the
cells' indices move. For each shift it scores the default taxonomy's categories after the context,
as the decoder does, and reports how far each label's probability moves from shift 0. A non-zero
spread is the attention kernels' reduction order over cell indices (without flash attention:
ggml_vec_soft_max_f32 and ggml_vec_dot_f16 group cells by their index into SIMD lanes; with it, the
cells are visited one by one in index order), amplified by the activations' 8-bit quantization."""

import json
import math
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
import typer

from ticketsmith.runtime.answer_format import FULL_LAYOUT
from ticketsmith.runtime.engine import BatchItem, LlamaEngine
from ticketsmith.runtime.settings import load_settings
from ticketsmith.runtime.triager import Triager

REPO = Path(__file__).resolve().parent.parent
TEXTS = ("My monitor flickers and then goes black", "Outlook crashes when opening attachments", "VPN drops at home")


def label_probabilities(
    engine: LlamaEngine, context: list[int], candidates: list[list[int]], shift: int
) -> npt.NDArray[np.float64]:
    """P(label) under the grammar after `context`, whose first tokens sit in sequence 1 and whose
    last token is evaluated in sequence 2 after `shift` free cells were first taken by sequence 3
    (as the decoder's and the test's last token and labels land in different cells)."""
    for seq in (2, 3, 4):
        engine.remove(seq, 0)
    for position in range(shift):
        engine.decode([BatchItem(0, position, (3,), False)])
    engine.copy(1, 2, 0, len(context) - 1)
    first = engine.decode([BatchItem(context[-1], len(context) - 1, (2,), True)])[0]
    out = []
    for tokens in candidates:
        engine.remove(4, 0)
        engine.copy(2, 4, 0, len(context))
        logits, total = first, 0.0
        for j, token in enumerate(tokens):
            allowed = sorted({c[j] for c in candidates if c[:j] == tokens[:j]})
            if len(allowed) > 1:
                row = logits[allowed].astype(np.float64)
                total += row[allowed.index(token)] - (row.max() + math.log(np.exp(row - row.max()).sum()))
            logits = engine.decode([BatchItem(token, len(context) + j, (4,), True)])[0]
        out.append(math.exp(total))
    return np.array(out)


def shared_context(engine: LlamaEngine, context: list[int]) -> None:
    """All but the context's last token, one per pass, in sequence 1 from cell 0 on."""
    engine.remove(-1, 0)
    for position, token in enumerate(context[:-1]):
        engine.decode([BatchItem(token, position, (1,), False)])


def main(
    shifts: Annotated[int, typer.Option(help="cell shifts to try: 0..N-1")] = 64,
    flash_attn: Annotated[str, typer.Option(help="off or on")] = "off",
    out: Annotated[Path, typer.Option(help="results folder")] = REPO / "bench" / "results",
) -> None:
    mode: Literal["off", "on"] = "on" if flash_attn == "on" else "off"
    triager = Triager(load_settings(n_threads=2, n_ubatch=1, flash_attn=mode))
    engine = triager.engine
    categories = list(triager.taxonomy.choices("category"))
    candidates = [engine.tokenize(c + FULL_LAYOUT.label_suffix("category")) for c in categories]
    report: dict[str, object] = {"flash_attn": mode, "shifts": shifts, "cpu": engine.cpu.describe(), "tickets": {}}
    for text in TEXTS:
        triager.decoder.reset()  # the cells were rearranged for the previous ticket
        answer = triager.read_ticket(text).answer
        prompt = triager.encode_ticket(text).tokens
        close = triager.decoder._summary_close
        tokens = answer.answer_tokens
        end = next(i for i in range(len(tokens)) if tokens[i : i + len(close)] == close) + len(close)
        context = prompt + tokens[:end]
        triager.decoder.reset()
        shared_context(engine, context)
        rows = np.array([label_probabilities(engine, context, candidates, s) for s in range(shifts)])
        gaps = np.abs(rows - rows[0]).max(axis=1)
        report["tickets"][text] = {  # type: ignore[index]
            "max_gap": float(gaps.max()),
            "shifts_with_a_gap": int((gaps > 1e-9).sum()),
            "gap_by_shift": [round(float(g), 6) for g in gaps],
            "p_at_shift_0": dict(zip(categories, np.round(rows[0], 6).tolist(), strict=True)),
        }
        print(f"{text}: max gap {gaps.max():.6f} over {shifts} shifts ({(gaps > 1e-9).sum()} shifts differ)")
    triager.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"kv_layout_fa_{mode}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
