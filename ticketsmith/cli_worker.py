"""The `worker` command: serve the configured sources (inbox folder, Jira, ...) until SIGTERM."""

import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from ticketsmith.cli import LoraOption, ModelOption, TaxonomyOption, ThreadsOption, _fail, app
from ticketsmith.runtime.errors import TicketsmithError


@app.command()
def worker(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="worker YAML (sources, state, runtime)")] = None,
    inbox: Annotated[Path | None, typer.Option("--inbox", help="serve this inbox folder (no config needed)")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="job store folder (default: <inbox>/state)")] = None,
    settle: Annotated[float | None, typer.Option(help="seconds a file must stay unchanged before it is read")] = None,
    lease: Annotated[
        float | None, typer.Option(help="seconds a claimed ticket stays this worker's; a killed worker's comes back")
    ] = None,
    model: ModelOption = None,
    lora: LoraOption = None,
    taxonomy: TaxonomyOption = None,
    threads: ThreadsOption = None,
) -> None:
    """Triage every new ticket of the configured sources and write the results back, until SIGTERM or
    Ctrl-C (the ticket in hand is finished first). Jobs live in a durable store: a killed worker loses
    nothing and writes nothing twice."""
    from ticketsmith.connectors.circuit_breaker import CircuitBreaker
    from ticketsmith.connectors.health import SourcePauses
    from ticketsmith.connectors.http_app import start_http
    from ticketsmith.connectors.inbox import InboxFolders
    from ticketsmith.connectors.inbox_worker import InboxWorker
    from ticketsmith.connectors.itsm_worker import ItsmWorker
    from ticketsmith.connectors.registry import connector_for
    from ticketsmith.connectors.service import Source, run_service
    from ticketsmith.connectors.store_config import open_store
    from ticketsmith.connectors.worker_config import InboxSettings, load_worker_config, source_keys
    from ticketsmith.log_setup import mask_secrets
    from ticketsmith.runtime.settings import load_runtime_section
    from ticketsmith.runtime.triager import Triager

    stop = threading.Event()  # set before the model loads: a stop during start-up is a clean stop too
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        overrides: dict[str, object] = {"state_dir": state_dir or (inbox / "state" if inbox else None)}
        if inbox is not None:
            overrides["inbox"] = InboxSettings(root=inbox, settle_s=settle if settle is not None else 1.0)
        settings = load_worker_config(config, lease_s=lease, **overrides)
        flags = {"model_path": model, "lora_path": lora, "taxonomy_path": taxonomy, "n_threads": threads}
        runtime = load_runtime_section(settings.runtime, config, **flags)  # flags, environment, then the YAML
        itsm_sources = settings.itsm_sources()
        if settings.inbox is None and not itsm_sources:
            keys = ", ".join(f"`{key}`" for key in source_keys())
            raise typer.BadParameter(f"no source: give --inbox or a --config with one of {keys}")
        settings.check_secrets()
        mask_secrets(settings.secret_values())  # read above; from here on no log line can show them
        store = open_store(settings.store, settings.state_dir, settings.retry)  # unreachable: one line, exit 2
        typer.echo("loading the model", err=True)
        triager = Triager(runtime)
    except TicketsmithError as exc:
        raise _fail(exc) from None
    worker_id = f"{os.uname().nodename}-{os.getpid()}"
    pauses = SourcePauses()  # shown by /healthz and /metrics; each source's circuit breaker pauses and resumes it
    sources: list[Source] = []
    watch: list[Path] = []
    if settings.inbox is not None:
        folders = InboxFolders(settings.inbox.root)
        sources.append(
            InboxWorker(
                triager, store, folders, worker_id, settings.lease_s, settings.inbox.settle_s, settings.inbox.max_bytes
            )
        )
        watch.append(folders.inbox)
    connectors = {(kind, index): connector_for(source) for kind, index, source in itsm_sources}
    itsm_workers = {
        where: ItsmWorker(
            triager,
            store,
            connector,
            worker_id,
            settings.lease_s,
            settings.poll_interval_s,
            CircuitBreaker(connector.source, settings.breaker, pauses),
        )
        for where, connector in connectors.items()
    }
    sources += list(itsm_workers.values())
    try:
        stop_http = start_http(settings, triager, itsm_workers, pauses) if settings.http else None
    except TicketsmithError as exc:
        raise _fail(exc) from None
    typer.echo(f"serving {len(sources)} source(s); state in {settings.state_dir}", err=True)
    try:
        run_service(triager, sources, stop, watch)
    finally:
        if stop_http is not None:
            stop_http()
        for itsm_worker in itsm_workers.values():
            itsm_worker.connector.close()
        try:
            counts: object = store.counts()
        except TicketsmithError:  # a database that is down must not turn a clean stop into a traceback
            counts = "unknown (the job store is unavailable)"
        store.close()
        typer.echo(f"stopped; jobs by state: {counts}", err=True)
