"""Operating the worker: one log line per ticket (text or JSON, secrets masked), `--version`, the
states of /healthz, and shadow mode (a source triaged and audited, with nothing written back)."""

import io
import json
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.jira import FakeJira
from tests.fakes.server import serve
from tests.fakes.triager import FakeTriager
from tests.fakes.zoho import FakeZohoAccounts, FakeZohoDesk
from tests.itsm_helpers import TICKETS, drain, make_worker
from tests.jira_checks import FIELDS
from ticketsmith import log_setup
from ticketsmith.connectors.health import HEALTH_CURSOR, SourcePauses
from ticketsmith.connectors.http_app import create_app
from ticketsmith.connectors.inbox import InboxFolders
from ticketsmith.connectors.inbox_worker import InboxWorker
from ticketsmith.connectors.itsm import FieldTarget, Secret
from ticketsmith.connectors.jira import JiraConnector, JiraSettings
from ticketsmith.connectors.job_store import SqliteJobStore
from ticketsmith.connectors.metrics import ServiceMetrics
from ticketsmith.connectors.ticket_log import TICKET_LOGGER
from ticketsmith.connectors.zoho_desk import ZohoDeskConnector, ZohoDeskSettings
from ticketsmith.connectors.zoho_oauth import ZohoOAuthSettings
from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.versions import version_line


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Where configure_logging writes during the test; the global logging state is put back after."""
    stream = io.StringIO()
    yield stream
    log_setup.reset_logging()


def test_the_inbox_worker_logs_one_json_line_per_ticket(
    taxonomy: Taxonomy, tmp_path: Path, log_output: io.StringIO
) -> None:
    log_setup.configure_logging("json", None, ticket_lines=True, stream=log_output)
    folders = InboxFolders(tmp_path / "tickets")
    (folders.inbox / "vpn.txt").write_text("The VPN drops every five minutes since this morning.")
    (folders.inbox / "bad.pdf").write_bytes(b"%PDF")
    store = SqliteJobStore(tmp_path / "jobs.db")
    triager = FakeTriager(taxonomy, unsure=["category"])  # as the untrained embedded model: to review
    worker = InboxWorker(triager, store, folders, "test", settle_s=0)
    worker.scan()
    while worker.work_once():
        pass
    store.close()
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    assert [line["name"] for line in lines] == [TICKET_LOGGER], log_output.getvalue()  # the .pdf is no job
    line = lines[0]
    assert line["source"] == "inbox" and line["ticket"] == "vpn.txt"
    assert line["outcome"] == "needs_review"
    assert set(line["labels"]) >= {"category", "subcategory"} and isinstance(line["ms"], int)
    assert 0 <= line["lowest_confidence"] <= 1 and line["levelname"] == "INFO"
    assert "VPN drops" not in log_output.getvalue()  # labels and numbers, never the ticket's text


def test_a_configured_secret_never_shows_even_at_debug(
    fake_triager: FakeTriager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO
) -> None:
    """Zoho's token endpoint takes the refresh token and client secret in its URL, and httpx logs
    every URL: the mask must hide them in text and in JSON."""
    refresh, client_secret = "1000.refresh-VERY-SECRET", "client-secret-DO-NOT-LOG"
    desk = FakeZohoDesk(accounts=FakeZohoAccounts(client_secret=client_secret, refresh_token=refresh))
    desk.add_ticket(*TICKETS[0], created="2099-01-01T08:00:00.000Z")
    monkeypatch.setenv("OPS_ZOHO_SECRET", client_secret)
    monkeypatch.setenv("OPS_ZOHO_REFRESH", refresh)
    for log_format in ("text", "json"):
        log_output.seek(0)
        log_output.truncate()
        log_setup.configure_logging(log_format, "DEBUG", ticket_lines=True, stream=log_output)
        log_setup.mask_secrets([client_secret, refresh])
        with serve(desk.app()) as url:
            oauth = ZohoOAuthSettings(
                accounts_url=url,
                client_id="1000.CLIENT",
                client_secret=Secret(env="OPS_ZOHO_SECRET"),
                refresh_token=Secret(env="OPS_ZOHO_REFRESH"),
            )
            settings = ZohoDeskSettings(
                base_url=f"{url}/api/v1",
                org_id="2389290",
                oauth=oauth,
                review_writes="all",
                fields={"category": FieldTarget(field="category")},
            )
            connector = ZohoDeskConnector(settings)
            worker, store = make_worker(fake_triager, connector, tmp_path / log_format)
            drain(worker)
            connector.close()
            store.close()
        output = log_output.getvalue()
        assert "oauth/v2/token" in output and log_setup.MASK in output  # the URL was logged, masked
        assert "zoho_desk:2389290" in output  # and the ticket's line
        assert refresh not in output and client_secret not in output


def test_text_lines_and_the_default_levels(log_output: io.StringIO) -> None:
    log_setup.configure_logging("text", None, ticket_lines=False, stream=log_output)
    logging.getLogger(TICKET_LOGGER).info("hidden: other commands stay quiet")
    logging.getLogger("ticketsmith.x").warning("shown")
    log_setup.configure_logging("text", None, ticket_lines=True, stream=log_output)
    logging.getLogger(TICKET_LOGGER).info("a ticket line")
    logging.getLogger("ticketsmith.x").info("hidden: INFO is for ticket lines only")
    assert log_output.getvalue().splitlines() == [
        "WARNING ticketsmith.x: shown",
        f"INFO {TICKET_LOGGER}: a ticket line",
    ]


def test_version_names_both_packages_without_loading_llama_cpp() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ticketsmith", "--version"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0
    assert out.stdout.decode().strip() == version_line()
    assert version_line().startswith("ticketsmith ") and ", llama-cpp-python " in version_line()
    imported = [line.split(b"|")[-1].strip() for line in out.stderr.splitlines() if line.startswith(b"import time:")]
    assert imported and not [name for name in imported if name.split(b".")[0] == b"llama_cpp"]


def test_shadow_mode_triages_and_audits_but_writes_nothing(
    fake_triager: FakeTriager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO
) -> None:
    log_setup.configure_logging("text", None, ticket_lines=True, stream=log_output)
    jira = FakeJira()
    keys = [jira.add_issue(summary, text) for summary, text in TICKETS[:2]]
    monkeypatch.setenv("OPS_JIRA_TOKEN", "secret-token")
    with serve(jira.app()) as url:
        settings = JiraSettings(
            base_url=url,
            email="bot@example.com",
            api_token=Secret(env="OPS_JIRA_TOKEN"),
            project="IT",
            fields=FIELDS,
            review_writes="all",
            mode="shadow",
        )
        connector = JiraConnector(settings)
        worker, store = make_worker(fake_triager, connector, tmp_path)
        drain(worker)
        connector.close()
    assert all(method == "GET" or path.endswith("/search/jql") for method, path in jira.calls)
    assert {("GET", f"/rest/api/3/issue/{key}") for key in keys} <= set(jira.calls)  # read, never written
    assert jira.edits == [] and all(jira.comments[key] == [] and jira.jsm_comments[key] == [] for key in keys)
    assert all(jira.issues[key]["fields"]["labels"] == [] for key in keys)
    for key in keys:
        job = store.get("jira:IT", key)
        assert job is not None and job.state in ("done", "needs_review") and job.result is not None
        (audit,) = store.audit_records(job.id)
        assert audit.mode == "shadow" and audit.written_to == [] and audit.output == job.result
    store.close()
    assert log_output.getvalue().count("(shadow: nothing written)") == 2


class HealthService:
    def __init__(self, url: str, triager: FakeTriager, store: "LockableJobStore", pauses: SourcePauses) -> None:
        self.url, self.triager, self.store, self.pauses = url, triager, store, pauses

    def health(self) -> tuple[int, dict[str, Any]]:
        answer = httpx.get(f"{self.url}/healthz")
        return answer.status_code, answer.json()


class LockableJobStore(SqliteJobStore):
    """A job store that can be made to refuse writes as a read-only SQLite database does."""

    writable = True

    def set_cursor(self, source: str, value: str) -> None:
        if not self.writable:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        super().set_cursor(source, value)


@pytest.fixture
def health_service(taxonomy: Taxonomy, tmp_path: Path) -> Iterator[HealthService]:
    triager = FakeTriager(taxonomy)
    store = LockableJobStore(tmp_path / "jobs.db")
    pauses = SourcePauses()
    app = create_app(triager, store, ServiceMetrics(store.counts, triager.model_info()), [], {}, pauses=pauses)
    try:
        with serve(app) as url:
            yield HealthService(url, triager, store, pauses)
    finally:
        store.close()


def test_healthz_ok_then_degraded_when_untrained_or_paused(health_service: HealthService) -> None:
    health_service.store.enqueue("jira:IT", "IT-1", {"key": "IT-1"})
    status, body = health_service.health()
    assert status == 200 and body["status"] == "ok" and body["reasons"] == [] and body["jobs"] == {"new": 1}
    assert health_service.store.get_cursor(HEALTH_CURSOR) is not None  # the write probe
    health_service.triager.trained_fields = []
    health_service.pauses.pause("jira:IT", "503 for 5 minutes; next try in 60 s")
    status, body = health_service.health()
    assert status == 200 and body["status"] == "degraded"
    assert body["reasons"] == [
        "the model is not trained for its taxonomy: every ticket goes to review",
        "source jira:IT is paused: 503 for 5 minutes; next try in 60 s",
    ]
    health_service.pauses.resume("jira:IT")
    assert health_service.health()[1]["reasons"] == [body["reasons"][0]]


def test_healthz_503_when_the_model_is_not_loaded(health_service: HealthService) -> None:
    health_service.triager.loaded = False
    status, body = health_service.health()
    assert status == 503 and body["status"] == "unavailable" and body["reasons"] == ["the model is not loaded"]


def test_healthz_503_when_the_store_takes_no_write(health_service: HealthService) -> None:
    health_service.store.writable = False  # reads work, every write fails
    status, body = health_service.health()
    assert status == 503 and body["status"] == "unavailable" and body["jobs"] == {}
    (reason,) = body["reasons"]
    assert reason.startswith("the job store is not writable: OperationalError: ")
