"""Training throughput on a CPU: `ticketsmith train` against a plain trl SFTTrainer run of the same model and data.

The plain run is what a user would write from trl's documentation: a prompt-completion dataset in
chat form (our system text and ticket as the prompt, the JSON answer as the completion), SFTConfig
defaults, the same LoRA rank, targets, batch and steps. Both times cover `trainer.train()` only
(model loading excluded) and count the input tokens trained on:

    python -m bench.train_speed --steps 10 --batch 4 -n 40
"""

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ticketsmith.runtime.answer_format import FULL_LAYOUT
from ticketsmith.runtime.prompt import system_text, user_text
from ticketsmith.runtime.settings import packaged_config
from ticketsmith.runtime.taxonomy import load_taxonomy
from ticketsmith.train.base_model import go_offline, resolve_base
from ticketsmith.train.finetune import read_adapter_metadata, train
from ticketsmith.train.synth import generate
from ticketsmith.train.train_config import DEFAULT_TARGETS, load_train_config


def plain_trl(rows: list[dict[str, Any]], taxonomy_path: Path, steps: int, batch: int, out: Path) -> dict[str, float]:
    go_offline()
    from datasets import Dataset
    from peft import LoraConfig
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    taxonomy = load_taxonomy(taxonomy_path)
    system = system_text(taxonomy)
    dataset = Dataset.from_list(
        [
            {
                "prompt": [{"role": "system", "content": system}, {"role": "user", "content": user_text(r["text"])}],
                "completion": [{"role": "assistant", "content": FULL_LAYOUT.render_answer(r)}],
            }
            for r in rows
        ]
    )
    _, folder = resolve_base(None)
    args = SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=batch,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        include_num_input_tokens_seen=True,
    )
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules=list(DEFAULT_TARGETS), task_type="CAUSAL_LM"
    )
    trainer = SFTTrainer(model=str(folder), args=args, train_dataset=dataset, peft_config=lora)
    started = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "tokens": trainer.state.num_input_tokens_seen, "examples": steps * batch}


def ours(data: Path, taxonomy_path: Path, steps: int, batch: int, out: Path) -> dict[str, float]:
    config = load_train_config(
        None,
        taxonomy_path=taxonomy_path,
        train_data=data,
        output_dir=out,
        max_steps=steps,
        batch_size=batch,
        grad_accum=1,
    )
    adapter = train(config)
    metadata = read_adapter_metadata(adapter)
    tokens = metadata.train_tokens
    return {"seconds": metadata.train_seconds, "tokens": tokens, "examples": steps * batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("-n", type=int, default=40, help="synthetic tickets")
    parser.add_argument("--taxonomy", type=Path, default=packaged_config("taxonomy.yaml"))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    rows = [t.model_dump(mode="json") for t in generate(load_taxonomy(args.taxonomy), args.n, seed=11)]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        runs = {
            "ticketsmith": ours(data, args.taxonomy, args.steps, args.batch, tmp / "ours"),
            "plain_trl": plain_trl(rows, args.taxonomy, args.steps, args.batch, tmp / "plain"),
        }
    for run in runs.values():
        run["tokens_per_s"] = round(run["tokens"] / run["seconds"], 1)
        run["examples_per_s"] = round(run["examples"] / run["seconds"], 3)
    ratio = runs["ticketsmith"]["examples_per_s"] / runs["plain_trl"]["examples_per_s"]
    result = {"steps": args.steps, "batch": args.batch, "runs": runs, "speedup_examples_per_s": round(ratio, 2)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_speed.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        "| run | seconds | input tokens | tokens/s | tickets/s |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {r['seconds']:.1f} | {r['tokens']} | {r['tokens_per_s']} | {r['examples_per_s']} |"
            for name, r in runs.items()
        ),
        "",
        f"ticketsmith / plain trl, tickets per second: {ratio:.2f}x",
    ]
    (args.out / "train_speed.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
