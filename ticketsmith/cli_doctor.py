"""The `doctor` command: on the box where the service will run, say what llama.cpp build it has, which
model it would serve and where its layers go, then triage one ticket through the real runtime.

The settings come from the same code as `triage` and `worker` (flags, TICKETSMITH_* environment,
YAML, defaults), so the doctor checks the model the service would load, not one of its own choosing.
llama.cpp is imported inside the command only: `ticketsmith --help` must not load it."""

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ticketsmith.cli import GpuLayersOption, LoraOption, ModelOption, TaxonomyOption, ThreadsOption, app
from ticketsmith.doctor_report import DoctorReport
from ticketsmith.runtime.errors import TicketsmithError
from ticketsmith.runtime.settings import RuntimeSettings, load_runtime_section, load_settings
from ticketsmith.runtime.yaml_config import read_yaml

WORKER_KEYS = ("runtime", "state_dir")  # keys only a worker YAML has; a runtime YAML's are settings


def is_worker_yaml(config: Path) -> bool:
    data = read_yaml(config)
    return isinstance(data, dict) and any(key in data for key in WORKER_KEYS)


def runtime_settings(config: Path | None, **flags: Any) -> RuntimeSettings:
    """The runtime settings `worker --config` (a worker YAML, its `runtime:` section) or `triage
    --config` (a runtime settings YAML) would use with these flags."""
    if config is not None and is_worker_yaml(config):
        from ticketsmith.connectors.worker_config import load_worker_config

        worker = load_worker_config(config)  # the whole file is validated, as the worker would
        return load_runtime_section(worker.runtime, config, **flags)
    return load_settings(config, **flags)


def _finish(report: DoctorReport, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False))
    if report.error is not None:
        typer.echo(f"error: {report.error}", err=True)
    elif not as_json:
        typer.echo("ok: the runtime loads the model and triages")
    raise typer.Exit(code=report.exit_code)


@app.command()
def doctor(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="worker YAML (its runtime: section) or runtime settings YAML")
    ] = None,
    model: ModelOption = None,
    lora: LoraOption = None,
    taxonomy: TaxonomyOption = None,
    threads: ThreadsOption = None,
    gpu_layers: GpuLayersOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON report instead of text")] = False,
) -> None:
    """Check this box: the llama.cpp build (CPU variant, GPU), the model the service would load, its
    offloaded layers and memory, and one sample ticket triaged. Exit 0 when all works, 2 for a missing
    or broken model or config, 1 when the sample ticket fails; no GPU is not a failure."""
    from ticketsmith.doctor import CONFIG_EXIT, diagnose, failed
    from ticketsmith.doctor_render import Section, render_section
    from ticketsmith.runtime.triager import Triager

    def emit(section: Section) -> None:
        if not as_json:
            typer.echo(render_section(section))

    flags = {
        "model_path": model,
        "lora_path": lora,
        "taxonomy_path": taxonomy,
        "n_threads": threads,
        "n_gpu_layers": gpu_layers,
    }
    try:
        settings = runtime_settings(config, **flags)
    except TicketsmithError as exc:
        _finish(failed(DoctorReport(), CONFIG_EXIT, exc), as_json)
    _finish(diagnose(settings, Triager, emit), as_json)
