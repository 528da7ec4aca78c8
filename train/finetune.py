"""`ticketsmith train`: LoRA fine-tuning with trl + peft, QLoRA (4-bit NF4) on a CUDA GPU.

The data is encoded by `TrainingEncoder` (the runtime's prompt and answer layout, loss on the
answer's labelled fields only) and handed to trl's SFTTrainer as token ids with labels, so trl adds
no template of its own. Checkpoints go to `output_dir/checkpoints` (resumable); the adapter, its
tokenizer, the taxonomy and `ticketsmith_adapter.json` to `output_dir/adapter`."""

import json
import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ticketsmith import __version__
from ticketsmith.runtime.errors import ConfigError
from ticketsmith.runtime.prompt import PROMPT_BY_NAME
from ticketsmith.runtime.taxonomy import Taxonomy, load_taxonomy
from ticketsmith.train.base_model import file_sha256, go_offline, resolve_base
from ticketsmith.train.encode import EncodedExample, TrainingEncoder, hf_tokenize
from ticketsmith.train.evaluate import read_labelled
from ticketsmith.train.qlora import plan_4bit
from ticketsmith.train.train_config import TrainConfig

log = logging.getLogger(__name__)
METADATA_FILE = "ticketsmith_adapter.json"


class AdapterMetadata(BaseModel):
    """What a trained adapter is valid for; convert and the runtime check it."""

    base: str
    base_sha256: str | None
    taxonomy_fingerprint: str
    prompt_version: str
    ticket_tokens: int | None = None  # None: an adapter from before the budget (served with the default)
    data_sha256: str
    examples: int
    hyperparameters: dict[str, Any]
    device: str
    quantized_base: bool
    train_loss: float | None
    loss_curve: list[float]
    dev_metrics: dict[str, float]
    train_seconds: float
    train_tokens: int
    created: str
    ticketsmith_version: str = __version__


def read_adapter_metadata(adapter_dir: Path) -> AdapterMetadata:
    path = adapter_dir / METADATA_FILE
    if not path.is_file():
        raise ConfigError(f"{adapter_dir}: not a ticketsmith adapter (no {METADATA_FILE}); train one first")
    try:
        return AdapterMetadata.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path}: corrupt adapter metadata: {exc}") from None


def encode_file(encoder: TrainingEncoder, path: Path, limit: int | None) -> list[EncodedExample]:
    try:
        rows = read_labelled(path, limit)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot be read as labelled JSONL ({exc})") from None
    if not rows:
        raise ConfigError(f"{path}: no labelled tickets (JSONL lines with a `text` field)")
    examples = []
    for number, row in enumerate(rows, 1):
        try:
            examples.append(encoder.encode(row))
        except ValueError as exc:
            raise ConfigError(f"{path}: ticket {number}: {exc}") from None
    return examples


def _device_plan(config: TrainConfig) -> tuple[str, bool, Any]:
    """(device, 4-bit base?, compute dtype) for this machine and config."""
    import torch

    four_bit = plan_4bit(config.quantization)  # raises with the one-line reason when QLoRA cannot run
    cuda = torch.cuda.is_available()
    if config.precision == "fp32":
        dtype = torch.float32
    elif config.precision == "bf16" or (cuda and torch.cuda.is_bf16_supported()):
        dtype = torch.bfloat16
    else:  # auto on a CPU: bf16 where the CPU computes it natively (AVX-512 BF16 / AMX), else fp32
        capability = torch.backends.cpu.get_cpu_capability()
        dtype = torch.bfloat16 if not cuda and "AVX512" in capability else torch.float32
    return ("cuda" if cuda else "cpu"), four_bit, dtype


def load_for_training(folder: Path, four_bit: bool, dtype: Any) -> Any:
    from transformers import AutoModelForCausalLM

    if not four_bit:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    from transformers import BitsAndBytesConfig  # bitsandbytes itself was checked by plan_4bit

    quant = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True
    )
    return AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, dtype=dtype, device_map={"": 0})


def _throughput_callback() -> Any:
    from transformers import TrainerCallback

    class Throughput(TrainerCallback):
        """Adds `tokens_per_s` (input tokens trained on per second since training began) to the logs."""

        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.seconds = 0.0
            self.tokens = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.started = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
            self.seconds = time.perf_counter() - self.started
            self.tokens = int(state.num_input_tokens_seen)
            if logs is not None and self.tokens:
                logs["tokens_per_s"] = round(self.tokens / self.seconds, 1)

    return Throughput()


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Fine-tune and save the adapter; returns the adapter folder."""
    go_offline()
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    device, four_bit, dtype = _device_plan(config)  # first: a QLoRA that cannot run stops before any work
    taxonomy: Taxonomy = load_taxonomy(config.taxonomy_path)
    source, folder = resolve_base(config.base)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoder = TrainingEncoder(
        taxonomy,
        hf_tokenize(tokenizer),
        tokenizer.chat_template,
        tokenizer.eos_token_id,
        config.max_length,
        config.max_summary_tokens,
        prompt_version=PROMPT_BY_NAME[config.prompt],
        ticket_tokens=config.ticket_tokens,
    )
    train_examples = encode_file(encoder, config.train_data, config.max_examples)
    dev_examples = encode_file(encoder, config.dev_data, None) if config.dev_data else []
    checkpointing = config.gradient_checkpointing == "on" or (
        config.gradient_checkpointing == "auto" and device == "cuda"
    )
    model = load_for_training(folder, four_bit, dtype)
    if four_bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)  # type: ignore[no-untyped-call]
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_targets,
        task_type="CAUSAL_LM",
    )
    checkpoints = config.output_dir / "checkpoints"
    args = SFTConfig(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        eval_strategy="no",
        activation_checkpointing=checkpointing,
        bf16=dtype == torch.bfloat16,
        use_cpu=device == "cpu",
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        max_length=None,  # examples are already cut by the runtime's rule
        include_num_input_tokens_seen=True,
        dataloader_num_workers=0,
    )
    columns = ("input_ids", "labels")
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([e.model_dump(include=set(columns)) for e in train_examples]),
        eval_dataset=Dataset.from_list([e.model_dump(include=set(columns)) for e in dev_examples])
        if dev_examples
        else None,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[(speed := _throughput_callback())],
    )
    has_checkpoint = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    result = trainer.train(resume_from_checkpoint=True if resume and has_checkpoint else None)
    dev_metrics = {k: float(v) for k, v in trainer.evaluate().items()} if dev_examples else {}
    adapter_dir = config.output_dir / "adapter"
    shutil.rmtree(adapter_dir, ignore_errors=True)
    trainer.save_model(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    shutil.copyfile(config.taxonomy_path, adapter_dir / "taxonomy.yaml")
    metadata = AdapterMetadata(
        base=str(source.resolve()),
        base_sha256=file_sha256(source) if source.is_file() else None,
        taxonomy_fingerprint=taxonomy.fingerprint(),
        prompt_version=encoder.prompt.version,
        ticket_tokens=encoder.prompt.ticket_tokens,
        data_sha256=file_sha256(config.train_data),
        examples=len(train_examples),
        hyperparameters=json.loads(config.model_dump_json()),
        device=device,
        quantized_base=four_bit,
        train_loss=float(result.training_loss) if result.training_loss is not None else None,
        loss_curve=[float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry],
        dev_metrics=dev_metrics,
        train_seconds=round(speed.seconds, 2),
        train_tokens=speed.tokens,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    (adapter_dir / METADATA_FILE).write_text(metadata.model_dump_json(indent=2), encoding="utf-8")
    return adapter_dir
