"""Claims per second of the job store alone (no model): PostgreSQL with 1, 2 and 4 worker processes,
SQLite with 1.

    python -m bench.store_claims [--jobs 3000] [--pg-url postgresql://postgres@127.0.0.1:5432/test]

Each run fills a fresh store (a new PostgreSQL schema, a new SQLite file) with `--jobs` jobs; then the
worker processes, released together, each loop claim + complete (with an audit record, as a worker
does) until no job is left. The figure is jobs finished per second of wall time, so it counts the
completion too: a claim alone is half the work and would flatter both stores. The database server
runs on the same machine and shares its cores with the workers (and with whatever else runs there):
each configuration runs `--repeat` times and the best run is reported, all runs are in the JSON.
Writes bench/results/store_claims.{json,md}."""

import json
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from ticketsmith.connectors.job_store import AuditRecord, JobStore, SqliteJobStore

REPO = Path(__file__).resolve().parent.parent
AUDIT = AuditRecord(input_hash="0" * 64, model="bench", output={"category": "Network"}, written_to=["bench:1"])


class StoreTarget(BaseModel):
    """Where a worker process finds the store (picklable, unlike a store)."""

    kind: str
    where: str  # a SQLite path, or a PostgreSQL URL
    schema_name: str = ""


class RunResult(BaseModel):
    store: str
    workers: int
    jobs: int
    seconds: float
    jobs_per_s: float
    claim_ms_p50: float
    claim_ms_p99: float


def _open(target: StoreTarget) -> JobStore:
    if target.kind == "sqlite":
        return SqliteJobStore(Path(target.where))
    from ticketsmith.connectors.pg_job_store import PostgresJobStore

    return PostgresJobStore(target.where, schema=target.schema_name, pool_size=1)


def _worker(
    target: StoreTarget, start: "multiprocessing.synchronize.Event", out: "multiprocessing.Queue[list[float]]"
) -> None:
    store = _open(target)
    name = f"bench-{multiprocessing.current_process().pid}"
    claim_s: list[float] = []
    start.wait()
    while True:
        began = time.perf_counter()
        job = store.claim(name, lease_s=60)
        claim_s.append(time.perf_counter() - began)
        if job is None:
            break
        store.complete(job.id, name, "done", {"category": "Network"}, AUDIT)
    store.close()
    out.put(claim_s)


def run(target: StoreTarget, workers: int, jobs: int) -> RunResult:
    store = _open(target)
    for i in range(jobs):
        store.enqueue("bench", f"T-{i}", {"key": f"T-{i}"})
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    out: multiprocessing.Queue[list[float]] = context.Queue()
    processes = [context.Process(target=_worker, args=(target, start, out)) for _ in range(workers)]
    for process in processes:
        process.start()
    time.sleep(2.0)  # every process has imported and connected before the clock starts
    began = time.perf_counter()
    start.set()
    claims = [claim for _ in processes for claim in out.get(timeout=600)]
    seconds = time.perf_counter() - began
    for process in processes:
        process.join()
    counts = store.counts()
    store.close()
    assert counts == {"done": jobs}, counts
    quantiles = statistics.quantiles(claims, n=100)
    return RunResult(
        store=target.kind,
        workers=workers,
        jobs=jobs,
        seconds=round(seconds, 3),
        jobs_per_s=round(jobs / seconds, 1),
        claim_ms_p50=round(statistics.median(claims) * 1000, 3),
        claim_ms_p99=round(quantiles[98] * 1000, 3),
    )


def markdown(results: list[RunResult], command: str) -> str:
    lines = [
        f"`{command}` ({platform.machine()}, {multiprocessing.cpu_count()} cores, Python {platform.python_version()})",
        "",
        "| store | worker processes | jobs | seconds | jobs claimed and completed per s"
        " | claim p50 ms | claim p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.store} | {r.workers} | {r.jobs} | {r.seconds} | {r.jobs_per_s} | {r.claim_ms_p50} | {r.claim_ms_p99} |"
        for r in results
    ]
    return "\n".join(lines) + "\n"


def main(
    jobs: Annotated[int, typer.Option(min=10, help="jobs per run")] = 3000,
    repeat: Annotated[int, typer.Option(min=1, help="runs per configuration; the best is reported")] = 3,
    pg_url: Annotated[str, typer.Option(help="a PostgreSQL database to create schemas in")] = (
        "postgresql://postgres@127.0.0.1:5432/test"
    ),
    pg_workers: Annotated[list[int] | None, typer.Option(help="process counts against PostgreSQL")] = None,
    sqlite_workers: Annotated[list[int] | None, typer.Option(help="process counts against SQLite")] = None,
    out: Annotated[Path, typer.Option(help="results folder")] = REPO / "bench" / "results",
) -> None:
    import psycopg

    runs: list[RunResult] = []
    best: list[RunResult] = []
    configurations = [("sqlite", n) for n in sqlite_workers or [1]] + [
        ("postgresql", n) for n in pg_workers or [1, 2, 4]
    ]
    for kind, workers in configurations:
        tries = []
        for attempt in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                schema = f"bench_{uuid.uuid4().hex[:12]}"
                target = (
                    StoreTarget(kind="sqlite", where=str(Path(tmp) / "jobs.db"))
                    if kind == "sqlite"
                    else StoreTarget(kind="postgresql", where=pg_url, schema_name=schema)
                )
                try:
                    tries.append(run(target, workers, jobs))
                finally:
                    if kind == "postgresql":
                        with psycopg.connect(pg_url, autocommit=True) as conn:
                            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            typer.echo(f"{attempt + 1}/{repeat} {tries[-1].model_dump_json()}", err=True)
        runs += tries
        best.append(max(tries, key=lambda r: r.jobs_per_s))
    command = "python -m bench.store_claims " + " ".join(sys.argv[1:])
    out.mkdir(parents=True, exist_ok=True)
    (out / "store_claims.json").write_text(
        json.dumps(
            {
                "command": command.strip(),
                "best": [r.model_dump() for r in best],
                "runs": [r.model_dump() for r in runs],
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    report = markdown(best, command.strip())
    (out / "store_claims.md").write_text(report, encoding="utf-8")
    typer.echo(report)


if __name__ == "__main__":
    typer.run(main)
