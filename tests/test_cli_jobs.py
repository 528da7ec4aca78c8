"""`ticketsmith jobs list|show|requeue|purge` on either store, as an operator runs it (no model loads)."""

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.pg_helpers import fresh_schema, require_postgres
from ticketsmith.cli import app
from ticketsmith.connectors.job_store import AuditRecord, JobStore, SqliteJobStore
from ticketsmith.connectors.store_config import StoreSettings, open_store

AUDIT = AuditRecord(
    input_hash="ab" * 32,
    model="tickets.Q4_K_M.gguf",
    output={"category": "Network"},
    confidences={"category": 0.91, "urgency": 0.42},
    written_to=["jira:IT-2:category", "jira:IT-2:note"],
)


@pytest.fixture(params=["sqlite", "postgres"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[JobStore, list[str]]]:
    """A store with one dead, one done and one new job, and the CLI options that reach it."""
    config = tmp_path / "worker.yaml"
    if request.param == "sqlite":
        store: JobStore = SqliteJobStore(tmp_path / "state" / "jobs.db", rng=random.Random(1))
        yield _filled(store), ["--state-dir", str(tmp_path / "state")]
        store.close()
        return
    url = require_postgres()
    with fresh_schema(url) as schema:
        config.write_text(f"state_dir: state\nstore: {{url: '{url}', schema: {schema}}}\n", encoding="utf-8")
        store = open_store(StoreSettings.model_validate({"url": url, "schema": schema}), tmp_path)
        yield _filled(store), ["--config", str(config)]
        store.close()


def _filled(store: JobStore) -> JobStore:
    for key in ("IT-1", "IT-2", "IT-3"):
        store.enqueue("jira:IT", key, {"key": key})
    dead = store.claim("w", 30)
    assert dead is not None
    store.fail(dead.id, "w", "HTTP 404: issue IT-1 does not exist", kind="permanent")
    done = store.claim("w", 30)
    assert done is not None
    store.complete(done.id, "w", "needs_review", {"category": "Network"}, AUDIT)
    return store


def jobs(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["jobs", *args])
    return result.exit_code, result.output


def test_list_by_state_and_source(queue: tuple[JobStore, list[str]]) -> None:
    _, where = queue
    code, out = jobs("list", *where)
    assert code == 0, out
    assert "jobs by state: dead 1, needs_review 1, new 1" in out
    assert "HTTP 404: issue IT-1 does not exist" in out and "IT-3" in out
    code, out = jobs("list", *where, "--state", "dead", "--json")
    listed = json.loads(out)
    assert code == 0 and [job["external_id"] for job in listed["jobs"]] == ["IT-1"]
    code, out = jobs("list", *where, "--source", "inbox")
    assert code == 0 and "no job matches" in out
    code, out = jobs("list", *where, "--state", "exploded")
    assert code == 2 and "exploded" in out


def test_show_with_errors_and_audit(queue: tuple[JobStore, list[str]]) -> None:
    store, where = queue
    done = store.get("jira:IT", "IT-2")
    dead = store.get("jira:IT", "IT-1")
    assert done is not None and dead is not None
    code, out = jobs("show", str(done.id), *where)
    assert code == 0, out
    assert "needs_review after 1 attempt(s)" in out and "model tickets.Q4_K_M.gguf" in out
    assert "lowest confidence urgency 0.42" in out and "wrote jira:IT-2:category, jira:IT-2:note" in out
    code, out = jobs("show", str(dead.id), *where, "--json")
    detail = json.loads(out)
    assert code == 0 and detail["errors"][0]["error"] == "HTTP 404: issue IT-1 does not exist"
    code, out = jobs("show", "9999", *where)
    assert code == 1 and "no job 9999" in out


def test_requeue_one_or_a_source_and_purge(queue: tuple[JobStore, list[str]]) -> None:
    store, where = queue
    dead = store.get("jira:IT", "IT-1")
    done = store.get("jira:IT", "IT-2")
    assert dead is not None and done is not None
    code, out = jobs("requeue", str(done.id), *where)
    assert code == 1 and "is needs_review, not dead" in out
    code, out = jobs("requeue", str(dead.id), *where)
    assert code == 0 and "requeued 1 dead job(s)" in out
    assert store.counts() == {"new": 2, "needs_review": 1}
    code, out = jobs("requeue", "--source", "jira:IT", *where, "--json")
    assert code == 0 and json.loads(out) == {"requeued": 0}
    code, out = jobs("requeue", *where)
    assert code == 2
    code, out = jobs("purge", "--older-than", "1h", *where)
    assert code == 0 and "purged 0 finished job(s)" in out
    code, out = jobs("purge", "--older-than", "0", *where, "--json")
    assert code == 0 and json.loads(out) == {"purged": 1}
    assert store.counts() == {"new": 2}
    code, out = jobs("purge", "--older-than", "soon", *where)
    assert code == 2


def test_a_missing_store_is_one_line(tmp_path: Path) -> None:
    code, out = jobs("list", "--state-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "no job store at" in out and not (tmp_path / "nowhere").exists()
    code, out = jobs("list")
    assert code == 2 and "--config" in out
