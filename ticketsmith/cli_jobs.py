"""The `jobs` commands: what the worker's queue holds, the operator's two repairs (requeue, purge), and
how shadow-mode guesses agree with the labels humans set later (agreement).

They work on either store, through the `JobStore` interface: the one a worker YAML names (`--config`),
or the SQLite file in a state folder (`--state-dir`). Each prints for a human, or JSON with `--json`."""

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ticketsmith.cli import _fail, app
from ticketsmith.connectors.job_store import JOB_STATES, Job, JobDetail, JobState, JobStore
from ticketsmith.runtime.errors import ConfigError, TicketsmithError

if TYPE_CHECKING:  # imported inside `agreement`, as the other commands import their modules
    from ticketsmith.connectors.agreement import AgreementReport, Tally

jobs_app = typer.Typer(help="See and mend the worker's job queue (either store).", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="worker YAML (names the store)")]
StateDirOption = Annotated[Path | None, typer.Option("--state-dir", help="a worker's state folder (SQLite store)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of text")]
SourceOption = Annotated[str | None, typer.Option("--source", help="only this source, e.g. jira:IT or inbox")]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """`90`, `90s`, `15m`, `12h`, `30d`, `2w` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None:
        raise typer.BadParameter(f"{text!r}: give an age such as 3600, 90m, 12h, 30d or 2w")
    return float(match[1]) * _UNITS[match[2] or "s"]


@contextmanager
def _store(config: Path | None, state_dir: Path | None) -> Iterator[JobStore]:
    """The store a worker with this config (or this state folder) uses; never creates an empty one
    for a mistyped folder."""
    from ticketsmith.connectors.job_store import SqliteJobStore
    from ticketsmith.connectors.store_config import open_store
    from ticketsmith.connectors.worker_config import load_worker_config

    try:
        if (config is None) == (state_dir is None):
            raise ConfigError("give --config worker.yaml or --state-dir FOLDER (one of them)")
        if config is not None:
            settings = load_worker_config(config)
            store_settings, state_dir = settings.store, settings.state_dir
        else:
            store_settings = None
        assert state_dir is not None
        if store_settings is None and not (state_dir / "jobs.db").is_file():
            raise ConfigError(f"no job store at {state_dir / 'jobs.db'}: is this the worker's state folder?")
        store = open_store(store_settings, state_dir) if store_settings else SqliteJobStore(state_dir / "jobs.db")
    except TicketsmithError as exc:
        raise _fail(exc) from None
    try:
        yield store
    except TicketsmithError as exc:  # e.g. the database went away mid-command
        raise _fail(exc) from None
    finally:
        store.close()


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{max(seconds, 0):.0f}s ago"


def _cut(text: str | None, width: int) -> str:
    one_line = " ".join((text or "").split())
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


@jobs_app.command("list")
def list_jobs(
    config: ConfigOption = None,
    state_dir: StateDirOption = None,
    state: Annotated[str | None, typer.Option("--state", help=f"only one of: {', '.join(JOB_STATES)}")] = None,
    source: SourceOption = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, most recently changed first")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List jobs by state and source, with a count per state."""
    if state is not None and state not in JOB_STATES:
        raise typer.BadParameter(f"{state!r}: one of {', '.join(JOB_STATES)}", param_hint="--state")
    wanted: JobState | None = next((s for s in JOB_STATES if s == state), None)
    with _store(config, state_dir) as store:
        jobs = store.list_jobs(wanted, source, limit)
        counts, now = store.counts(), store.now()
    if as_json:
        _print_json({"counts": counts, "jobs": [job.model_dump(mode="json") for job in jobs]})
        return
    typer.echo("jobs by state: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    if not jobs:
        typer.echo("no job matches")
        return
    rows = [("ID", "SOURCE", "TICKET", "STATE", "TRIES", "UPDATED", "LAST ERROR")]
    rows += [
        (
            str(job.id),
            job.source,
            _cut(job.external_id, 32),
            job.state,
            str(job.attempts),
            _ago(now - job.updated_at),
            _cut(job.last_error, 60),
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _describe(detail: JobDetail, now: float) -> Iterator[str]:
    job: Job = detail.job
    yield f"job {job.id}: {job.source} {job.external_id}"
    yield f"  state        {job.state} after {job.attempts} attempt(s)"
    if job.state in ("new", "failed"):
        yield f"  next attempt {_when(job.next_attempt_at)} UTC"
    if job.lease_owner:
        yield f"  leased to    {job.lease_owner} until {_when(job.lease_until)} UTC"
    yield f"  created      {_when(job.created_at)} UTC; updated {_ago(now - job.updated_at)}"
    yield f"  payload      {json.dumps(job.payload, ensure_ascii=False)}"
    if job.result is not None:
        yield f"  result       {_cut(json.dumps(job.result, ensure_ascii=False), 200)}"
    yield f"errors ({len(detail.errors)}):"
    for error in detail.errors:
        yield f"  {_when(error.at)}  attempt {error.attempt}  {_cut(error.error, 160)}"
    yield f"audit records ({len(detail.audit)}):"
    for entry in detail.audit:
        record = entry.record
        lowest = min(record.confidences.items(), key=lambda item: item[1], default=None)
        yield f"  {_when(entry.at)}  model {record.model}  input sha256 {record.input_hash[:12]}"
        if lowest is not None:
            yield f"    lowest confidence {lowest[0]} {lowest[1]:.2f}"
        yield f"    wrote {', '.join(record.written_to) or 'nothing'}"


@jobs_app.command("show")
def show(
    job_id: Annotated[int, typer.Argument(help="the job's ID (see `jobs list`)")],
    config: ConfigOption = None,
    state_dir: StateDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one job with its errors and audit records."""
    with _store(config, state_dir) as store:
        detail, now = store.show(job_id), store.now()
    if detail is None:
        typer.echo(f"error: no job {job_id}", err=True)
        raise typer.Exit(code=1)
    if as_json:
        _print_json(detail.model_dump(mode="json"))
        return
    for line in _describe(detail, now):
        typer.echo(line)


@jobs_app.command("requeue")
def requeue(
    job_id: Annotated[int | None, typer.Argument(help="one dead job's ID")] = None,
    source: Annotated[str | None, typer.Option("--source", help="every dead job of this source")] = None,
    config: ConfigOption = None,
    state_dir: StateDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give dead jobs a fresh set of attempts: one job, or all of a source. Their error history stays."""
    if (job_id is None) == (source is None):
        raise typer.BadParameter("give a job ID or --source (one of them)")
    with _store(config, state_dir) as store:
        count = store.requeue(job_id, source)
        detail = store.show(job_id) if job_id is not None and count == 0 else None
    if as_json:
        _print_json({"requeued": count})
    else:
        typer.echo(f"requeued {count} dead job(s)")
    if job_id is not None and count == 0:
        why = f"is {detail.job.state}, not dead" if detail is not None else "does not exist"
        typer.echo(f"error: job {job_id} {why}: nothing to requeue", err=True)
        raise typer.Exit(code=1)


@jobs_app.command("purge")
def purge(
    older_than: Annotated[str, typer.Option("--older-than", help="age of the last change: 3600, 12h, 30d, 2w")],
    source: SourceOption = None,
    config: ConfigOption = None,
    state_dir: StateDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete finished jobs (done, needs_review) older than an age, with their audit records."""
    # A purged ticket that a source reports again becomes a new job; its write-back stays idempotent.
    seconds = parse_age(older_than)
    with _store(config, state_dir) as store:
        count = store.purge(seconds, source)
    if as_json:
        _print_json({"purged": count})
    else:
        typer.echo(f"purged {count} finished job(s) older than {older_than}")


def _tally(tally: "Tally") -> str:
    if not tally.labelled:
        return "-"
    return f"{tally.agreed}/{tally.labelled} ({tally.agreement or 0:.0%})"


def _agreement_lines(report: "AgreementReport") -> Iterator[str]:
    for source in report.sources:
        live = f", {source.live} live (skipped: we wrote their fields)" if source.live else ""
        yield f"{source.source}: {source.jobs} finished job(s): {source.shadow} in shadow mode{live}"
        if not source.shadow:
            continue
        unreadable = f", {source.unreadable} unreadable ({_cut(source.first_error, 100)})" if source.unreadable else ""
        yield f"  tickets read back: {source.read}{unreadable}"
        yield (
            f"  would have been auto-accepted: {source.auto_accepted} of {source.shadow}"
            f" ({source.auto_accepted_share or 0:.0%})"
        )
        rows = [("FIELD", "SYSTEM FIELD", "READ", "NOT YET", "AGREE", "AUTO-ACCEPTED", "NEEDS REVIEW")]
        rows += [
            (
                field.field,
                field.system_field,
                str(field.read),
                str(field.not_labelled),
                _tally(field.overall),
                _tally(field.auto_accepted),
                _tally(field.needs_review),
            )
            for field in source.fields
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            yield "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
    if report.other_jobs:
        yield f"{report.other_jobs} finished job(s) of other sources (the inbox, sources no longer configured): skipped"


@jobs_app.command("agreement")
def agreement(
    config: Annotated[Path, typer.Option("--config", "-c", help="worker YAML: the store and the ITSM sources")],
    source: SourceOption = None,
    since: Annotated[str | None, typer.Option("--since", help="only jobs finished this recently: 12h, 7d, 2w")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many jobs, the most recently finished")] = 500,
    as_json: JsonOption = False,
) -> None:
    """Compare shadow-mode guesses with the labels humans set later, read back from each ticket, per
    source and field (live-mode jobs are skipped: their fields hold what we wrote)."""
    from ticketsmith.connectors.agreement import measure_agreement
    from ticketsmith.connectors.registry import connector_for
    from ticketsmith.connectors.worker_config import load_worker_config

    since_s = parse_age(since) if since is not None else None
    with _store(config, None) as store, ExitStack() as closing:
        settings = load_worker_config(config)  # _store has validated it: a config error is one line, exit 2
        settings.check_secrets()
        connectors = [connector_for(item.settings) for item in settings.itsm_sources()]
        for connector in connectors:
            closing.callback(connector.close)
        names = [connector.source for connector in connectors]
        if not names:
            raise ConfigError(f"{config} names no ITSM source: there is nothing to read back")
        if source is not None and source not in names:
            raise ConfigError(f"no ITSM source {source!r} in {config}; its sources: {', '.join(names)}")
        report = measure_agreement(store, connectors, since_s, limit, source)
    if as_json:
        _print_json(report.model_dump(mode="json"))
        return
    for line in _agreement_lines(report):
        typer.echo(line)
