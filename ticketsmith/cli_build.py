"""The `train`, `fuse` and `convert` commands (the optional `ticketsmith[train]` extra; imported lazily)."""

import json
from pathlib import Path
from typing import Annotated

import typer

from ticketsmith.cli import TaxonomyOption, _fail, app
from ticketsmith.runtime.errors import ConfigError, TicketsmithError


def _missing_extra(exc: ImportError) -> typer.Exit:
    typer.echo(f"error: {exc.name or exc} is not installed: pip install 'ticketsmith[train]'", err=True)
    return typer.Exit(code=2)


@app.command()
def train(
    train_data: Annotated[Path | None, typer.Option("--data", help="labelled JSONL to train on")] = None,
    out: Annotated[
        Path | None, typer.Option("--output", "-o", "--out", help="run folder: checkpoints/ and adapter/")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="training config YAML")] = None,
    base: Annotated[Path | None, typer.Option(help="HF model folder or GGUF file (default: embedded SmolLM2)")] = None,
    dev_data: Annotated[Path | None, typer.Option("--dev", help="labelled JSONL for the final dev loss")] = None,
    taxonomy: TaxonomyOption = None,
    epochs: Annotated[float | None, typer.Option(help="passes over the data")] = None,
    max_steps: Annotated[int | None, typer.Option(help="stop after N optimizer steps (overrides epochs)")] = None,
    max_examples: Annotated[int | None, typer.Option(help="use the first N tickets of --data")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="learning rate")] = None,
    batch_size: Annotated[int | None, typer.Option(help="tickets per device step")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="steps per optimizer update")] = None,
    max_length: Annotated[int | None, typer.Option(help="tokens per example; ticket text is cut to fit")] = None,
    ticket_tokens: Annotated[
        int | None,
        typer.Option(help="ticket token budget (default 512): a longer ticket keeps its start and end; recorded"),
    ] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank")] = None,
    lora_alpha: Annotated[int | None, typer.Option(help="LoRA alpha")] = None,
    lora_targets: Annotated[str | None, typer.Option(help="comma-separated module names")] = None,
    quantization: Annotated[str | None, typer.Option(help="auto | 4bit | none")] = None,
    prompt: Annotated[
        str | None, typer.Option(help="compact (default: no label listing, the model learns the labels) | full")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue from the last checkpoint in the run folder")] = False,
    head_only: Annotated[
        bool, typer.Option("--head-only", help="fit the label head only (minutes); the run serves it on the base LLM")
    ] = False,
    target_precision: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="precision the head's review thresholds are fitted for")
    ] = 0.95,
    calibration_data: Annotated[
        Path | None,
        typer.Option(
            "--calibration-data",
            help="labelled JSONL of real tickets beside synthetic --data: the head trains on them too, and its "
            "calibration and review thresholds are fitted on their out-of-fold predictions alone",
        ),
    ] = None,
    calibration_weight: Annotated[
        float, typer.Option(min=0.0, help="weight of a --calibration-data ticket in the head's fits (1: as the rest)")
    ] = 1.0,
) -> None:
    """Fit the label head, then fine-tune a LoRA adapter (QLoRA on a CUDA GPU, LoRA on a CPU) on
    labelled tickets, offline. The run folder (--out) can be served as it stands: --model RUN."""
    try:
        from ticketsmith.train.train_config import check_train_inputs, load_train_config
    except ImportError as exc:
        raise _missing_extra(exc) from None
    try:
        settings = load_train_config(
            config,
            train_data=train_data,
            output_dir=out,
            base=base,
            dev_data=dev_data,
            taxonomy_path=taxonomy,
            epochs=epochs,
            max_steps=max_steps,
            max_examples=max_examples,
            learning_rate=lr,
            batch_size=batch_size,
            grad_accum=grad_accum,
            max_length=max_length,
            ticket_tokens=ticket_tokens,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            prompt=prompt,
            lora_targets=lora_targets.split(",") if lora_targets else None,
            quantization=quantization,
        )
        check_train_inputs(settings)
        if not head_only:  # a QLoRA that cannot run here stops now, not after the head is fitted
            try:
                from ticketsmith.train.qlora import plan_4bit

                plan_4bit(settings.quantization)
            except ImportError as exc:
                raise _missing_extra(exc) from None
        if not resume:
            try:  # imported after the settings are checked: scikit-learn takes seconds to load
                from ticketsmith.train.label_head import fit_run_head
            except ImportError as exc:
                raise _missing_extra(exc) from None
            head = fit_run_head(
                settings.train_data,
                settings.dev_data,
                settings.taxonomy_path,
                settings.output_dir,
                base=settings.base,
                max_examples=settings.max_examples,
                target_precision=target_precision,
                ticket_tokens=settings.ticket_tokens,
                calibration_path=calibration_data,
                calibration_weight=calibration_weight,
                progress=lambda line: typer.echo(line, err=True),
            )
            typer.echo(head.model_dump_json(indent=2))
        if head_only:
            return
        try:
            from ticketsmith.train.finetune import train as run_training
        except ImportError as exc:
            raise _missing_extra(exc) from None
        adapter = run_training(settings, resume=resume)
    except TicketsmithError as exc:
        raise _fail(exc) from None
    typer.echo(f"adapter saved to {adapter}", err=True)


@app.command()
def convert(
    adapter: Annotated[Path, typer.Option(help="adapter folder written by `ticketsmith train`")],
    out: Annotated[Path, typer.Option("--output", "-o", "--out", help="GGUF file to write")],
    base: Annotated[Path | None, typer.Option(help="base model (default: the one recorded in the adapter)")] = None,
    quant: Annotated[str, typer.Option(help="Q4_K_M, Q5_K_M, Q8_0 or F16")] = "Q4_K_M",
    lora_gguf: Annotated[bool, typer.Option("--lora-gguf", help="write the adapter alone as a GGUF LoRA")] = False,
    verify: Annotated[Path | None, typer.Option(help="labelled dev JSONL: check parity before installing")] = None,
    verify_limit: Annotated[int | None, typer.Option(help="use the first N tickets of --verify")] = None,
    min_agreement: Annotated[float, typer.Option(help="parity bound on every categorical field")] = 0.95,
) -> None:
    """Merge an adapter and write a quantized GGUF (or a GGUF LoRA) with its manifest."""
    from ticketsmith.convert.request import ConvertRequest

    request = ConvertRequest(
        adapter=adapter,
        out=out,
        base=base,
        quant=quant,
        lora_gguf=lora_gguf,
        verify=verify,
        verify_limit=verify_limit,
        min_agreement=min_agreement,
    )
    try:
        request.output_quant()  # a mistyped path or quant type fails before the training stack loads
    except TicketsmithError as exc:
        raise _fail(exc) from None
    try:
        from ticketsmith.convert.pipeline import ParityFailed
        from ticketsmith.convert.pipeline import convert as run_conversion
    except ImportError as exc:
        raise _missing_extra(exc) from None
    try:
        result = run_conversion(request, lambda line: typer.echo(line, err=True))
    except ParityFailed as exc:
        typer.echo(exc.report.model_dump_json(indent=2))
        raise _fail(exc) from None
    except TicketsmithError as exc:
        raise _fail(exc) from None
    typer.echo(result.model_dump_json(indent=2))


@app.command()
def fuse(
    model: Annotated[Path, typer.Option(help="a converted GGUF with its label head, or a run folder")],
    data: Annotated[Path, typer.Option("--data", help="labelled JSONL the LLM did not train on (the dev split)")],
    taxonomy: TaxonomyOption = None,
    limit: Annotated[int | None, typer.Option(help="use the first N tickets")] = None,
    target_precision: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="precision for the review thresholds")
    ] = 0.95,
    threads: Annotated[int | None, typer.Option(help="CPU threads")] = None,
) -> None:
    """Fit how much the fine-tuned LLM and the label head each count (log loss on --data) and the
    review thresholds, and save them in the head. Report accuracy on other tickets afterwards."""
    try:
        from ticketsmith.runtime.settings import load_settings
        from ticketsmith.runtime.triager import Triager
        from ticketsmith.train.evaluate import read_labelled
        from ticketsmith.train.fusion_fit import fuse as run_fusion
    except ImportError as exc:
        raise _missing_extra(exc) from None
    try:
        rows = read_labelled(data, limit)
        triager = Triager(load_settings(model_path=model, taxonomy_path=taxonomy, n_threads=threads))
        if triager.head is None:
            raise ConfigError(f"{model} has no label head to fuse with: train one (`ticketsmith train`) first")
    except (TicketsmithError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    report = run_fusion(triager, rows, target_precision, lambda line: typer.echo(line, err=True))
    typer.echo(json.dumps(report, indent=2))
