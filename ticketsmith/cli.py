"""The `ticketsmith` command line."""

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ticketsmith.log_setup import LogFormat, LogLevel, configure_logging
from ticketsmith.progress import track
from ticketsmith.runtime.errors import TicketsmithError
from ticketsmith.runtime.grammar import compile_grammar, write_grammar
from ticketsmith.runtime.schema import TriageError, TriageResult, result_json_schema
from ticketsmith.runtime.settings import load_settings, packaged_config
from ticketsmith.runtime.taxonomy import Taxonomy, load_taxonomy
from ticketsmith.versions import version_line

if TYPE_CHECKING:
    from ticketsmith.runtime.triager import Triager

app = typer.Typer(help="Raw IT support text in, schema-valid JSON tickets out, fully offline.", no_args_is_help=True)
data_app = typer.Typer(help="Make labelled ticket datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="stderr log lines as text or JSON (one object a line)")
    ] = "text",
    log_level: Annotated[
        LogLevel | None,
        typer.Option(
            "--log-level", case_sensitive=False, help="default: WARNING; the worker adds its per-ticket lines at INFO"
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the versions and exit")
    ] = False,
) -> None:
    configure_logging(log_format, log_level, ticket_lines=ctx.invoked_subcommand == "worker")


TaxonomyOption = Annotated[Path | None, typer.Option("--taxonomy", help="taxonomy YAML (default: the packaged one)")]
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="runtime settings YAML")]
ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "-m",
        help="a GGUF (its convert manifest may bring a label head) or a `train` run folder (default: embedded)",
    ),
]
ThreadsOption = Annotated[int | None, typer.Option("--threads", "-t", help="CPU threads")]
NCtxOption = Annotated[int | None, typer.Option("--n-ctx", help="context size in tokens")]
LoraOption = Annotated[Path | None, typer.Option("--lora", help="GGUF LoRA adapter applied over --model")]
GpuLayersOption = Annotated[int | None, typer.Option("--gpu-layers", help="layers to offload to a GPU (-1: all)")]


def _fail(exc: TicketsmithError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


def _taxonomy(path: Path | None) -> Taxonomy:
    """The given taxonomy, or the packaged default; a broken one ends the command with its message."""
    try:
        return load_taxonomy(path or packaged_config("taxonomy.yaml"))
    except TicketsmithError as exc:
        raise _fail(exc) from None


@app.command()
def schema(taxonomy: TaxonomyOption = None) -> None:
    """Print the JSON Schema of one triage result line."""
    loaded = _taxonomy(taxonomy)
    typer.echo(json.dumps(result_json_schema(loaded), indent=2, ensure_ascii=False))


@app.command()
def grammar(
    taxonomy: TaxonomyOption = None,
    out: Annotated[Path | None, typer.Option("--output", "-o", "--out", help="file to write (default: print)")] = None,
) -> None:
    """Compile the taxonomy into the GBNF grammar the runtime decodes under."""
    loaded = _taxonomy(taxonomy)
    if out is None:
        typer.echo(compile_grammar(loaded), nl=False)
    else:
        write_grammar(loaded, out)
        typer.echo(f"wrote {out}", err=True)


def _load_triager(
    config: Path | None,
    model: Path | None,
    taxonomy: Path | None,
    threads: int | None,
    n_ctx: int | None,
    gpu_layers: int | None,
    lora: Path | None = None,
) -> "Triager":
    from ticketsmith.runtime.triager import Triager  # imported here: loads llama.cpp

    settings = load_settings(
        config,
        model_path=model,
        lora_path=lora,
        taxonomy_path=taxonomy,
        n_threads=threads,
        n_ctx=n_ctx,
        n_gpu_layers=gpu_layers,
    )
    return Triager(settings)


def _count_lines(path: Path) -> int | None:
    """Lines of a JSONL batch, for the progress bar's time left; None if it cannot be read twice."""
    try:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return None


@app.command()
def triage(
    text: Annotated[str | None, typer.Argument(help="one ticket's text")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", "-i", help='JSONL of {"id", "text"}; - for stdin')
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", "--out", help="write JSONL here instead of stdout")
    ] = None,
    config: ConfigOption = None,
    model: ModelOption = None,
    taxonomy: TaxonomyOption = None,
    threads: ThreadsOption = None,
    n_ctx: NCtxOption = None,
    gpu_layers: GpuLayersOption = None,
    lora: LoraOption = None,
) -> None:
    """Triage one ticket (TEXT) or a JSONL batch (--input) into JSON tickets."""
    from ticketsmith.runtime.batch_io import read_ticket_lines

    if (text is None) == (input_file is None):
        typer.echo("error: give either TEXT or --input FILE", err=True)
        raise typer.Exit(code=2)
    try:
        triager = _load_triager(config, model, taxonomy, threads, n_ctx, gpu_layers, lora)
    except TicketsmithError as exc:
        raise _fail(exc) from None
    if text is not None:
        try:
            typer.echo(triager.triage(text).model_dump_json())
        except TicketsmithError as exc:
            raise _fail(exc) from None
        return
    assert input_file is not None
    source = sys.stdin.buffer if str(input_file) == "-" else None
    try:
        stream = source or input_file.open("rb")
    except OSError as exc:
        typer.echo(f"error: cannot read {input_file}: {exc}", err=True)
        raise typer.Exit(code=2) from None
    sink = output.open("w", encoding="utf-8") if output else sys.stdout
    counts = {"ok": 0, "review": 0, "error": 0}
    started = time.perf_counter()
    lines = _count_lines(input_file) if source is None else None
    with stream:
        for result in track(triager.triage_many(read_ticket_lines(stream)), "triage", lines):
            sink.write(result.model_dump_json() + "\n")
            sink.flush()  # each finished ticket is on disk even if a later one crashes the process
            if isinstance(result, TriageError):
                counts["error"] += 1
            elif isinstance(result, TriageResult):
                counts["review" if result.needs_review else "ok"] += 1
    if output:
        sink.close()
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    typer.echo(
        f"triaged {total} lines in {elapsed:.1f}s: {counts['ok']} accepted, {counts['review']} need review, "
        f"{counts['error']} errors",
        err=True,
    )


@data_app.command("synth")
def data_synth(
    n: Annotated[int, typer.Option("-n", help="number of tickets", min=1)] = 500,
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives the same tickets")] = 0,
    taxonomy: TaxonomyOption = None,
    out: Annotated[Path | None, typer.Option("--output", "-o", "--out", help="JSONL file (default: stdout)")] = None,
) -> None:
    """Generate labelled synthetic tickets from the taxonomy."""
    from ticketsmith.train.synth import generate

    loaded = _taxonomy(taxonomy)
    try:
        tickets = generate(loaded, n, seed)
    except TicketsmithError as exc:
        raise _fail(exc) from None
    sink = out.open("w", encoding="utf-8") if out else sys.stdout
    for ticket in tickets:
        sink.write(ticket.model_dump_json() + "\n")
    if out:
        sink.close()
        typer.echo(f"wrote {n} tickets to {out}", err=True)


@data_app.command("import")
def data_import(
    export: Annotated[Path, typer.Argument(help="ITSM export: .csv or .jsonl")],
    mapping: Annotated[str, typer.Option("--map", help="FIELD=COLUMN[+COLUMN],... e.g. text=title+body,category=Type")],
    out: Annotated[Path, typer.Option("--output", "-o", "--out", help="folder for train/dev/test.jsonl")],
    taxonomy: TaxonomyOption = None,
    derive_taxonomy: Annotated[
        Path | None, typer.Option("--derive-taxonomy", help="write a taxonomy YAML from the export's labels and use it")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the stratified split")] = 0,
    encoding: Annotated[
        str | None, typer.Option(help="the export's encoding (default: UTF-8 if it decodes, else Windows-1252)")
    ] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="CSV delimiter: one character, or tab (default: sniffed from the header)")
    ] = None,
) -> None:
    """Import an ITSM export: clean, de-duplicate, check labels, split train/dev/test. The export may
    label any subset of the fields; --derive-taxonomy then writes a taxonomy of those fields only."""
    from ticketsmith.train import data_import as importer

    try:
        fields = importer.parse_mapping(mapping)
        if derive_taxonomy is not None:
            derived = importer.derive_taxonomy(export, fields, derive_taxonomy.stem, encoding, delimiter)
            importer.write_taxonomy(derived, derive_taxonomy)
            typer.echo(f"wrote {derive_taxonomy}", err=True)
        loaded = _taxonomy(derive_taxonomy or taxonomy)
        splits, report = importer.import_export(export, fields, loaded, seed, encoding=encoding, delimiter=delimiter)
    except TicketsmithError as exc:
        raise _fail(exc) from None
    importer.write_splits(splits, out)
    (out / "import_report.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    typer.echo(report.model_dump_json(indent=2))
    if report.kept == 0:
        typer.echo(f"error: {importer.nothing_kept_reason(report)}", err=True)
        raise typer.Exit(code=1)


@app.command("eval")
def evaluate(
    data: Annotated[Path, typer.Option("--data", help="labelled JSONL: text plus any of the label fields")],
    out: Annotated[Path, typer.Option("--output", "-o", "--out", help="report folder")] = Path("eval-report"),
    limit: Annotated[int | None, typer.Option(help="evaluate the first N tickets only")] = None,
    target_precision: Annotated[float, typer.Option(help="precision the review threshold should reach")] = 0.95,
    config: ConfigOption = None,
    model: ModelOption = None,
    lora: LoraOption = None,
    taxonomy: TaxonomyOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Evaluate a model on a labelled split through the real runtime path; writes eval.md, eval.json
    and reliability.png. Fields a dataset does not label are skipped, not scored as wrong."""
    from ticketsmith.train.evaluate import evaluate as run_evaluation
    from ticketsmith.train.evaluate import read_labelled, write_report

    try:
        triager = _load_triager(config, model, taxonomy, threads, None, None, lora)
        rows = read_labelled(data, limit)
    except (TicketsmithError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    report, bins, tickets = run_evaluation(triager, rows, data.name, target_precision)
    write_report(report, bins, tickets, out)
    typer.echo(f"wrote {out / 'eval.md'}", err=True)
    typer.echo((out / "eval.md").read_text(encoding="utf-8"))


from ticketsmith import cli_build, cli_doctor, cli_jobs, cli_worker  # noqa: E402, F401  (register their commands)
